"""The scale-out message store on Cassandra or ScyllaDB, and `parley migrate`'s runner."""
