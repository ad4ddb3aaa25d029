"""The scale-out message store on Cassandra or ScyllaDB (CassandraStore in store.py), and the
schema runner behind `parley migrate`.

The store: the session seam (session.py: the driver, or the tests' in-memory model), every
statement it prepares (statements.py), the session shared by the concerns (database.py), how
rows are spread over partitions (partitions.py), what a batch writes (writes.py), and one
module per concern of parley.ports.Store (messages.py, accounts.py, moderation.py,
attachments.py). The runner: migrate.py, with its schema lock (lease.py) and its errors
(migration_errors.py)."""
