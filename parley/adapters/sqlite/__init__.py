"""The embedded message store on one SQLite file in WAL mode (SqliteStore in store.py): the
connections and threads (database.py), the schema and its upgrades (migrations.py), and one
module per concern of parley.ports.Store (messages.py with writes.py and rows.py, accounts.py,
moderation.py, attachments.py, calls.py)."""
