"""The scale-out store: every concern of parley.ports.Store on one Cassandra / ScyllaDB keyspace
(the data model in the schema's comments, parley/migrations/cassandra; every statement in
statements.py; the single-writer design in docs/adr/0001-one-writer-per-conversation.md)."""

from __future__ import annotations

from parley.adapters.cassandra.accounts import CassandraAccounts
from parley.adapters.cassandra.devices import CassandraDevices
from parley.adapters.cassandra.messages import CassandraMessages
from parley.adapters.cassandra.moderation import CassandraModeration
from parley.adapters.cassandra.session import ClusterSettings, DriverSession
from parley.adapters.cassandra.sessions import CassandraSessions


class CassandraStore(CassandraMessages, CassandraAccounts, CassandraModeration, CassandraSessions, CassandraDevices):
    """Implements parley.ports.Store through a CqlSession (database.py: the session and the
    bound on requests in flight); each concern's tables in a module of their own."""

    @classmethod
    async def connect(cls, cfg: ClusterSettings, **kw: int) -> "CassandraStore":
        return cls(await DriverSession.connect(cfg), **kw)
