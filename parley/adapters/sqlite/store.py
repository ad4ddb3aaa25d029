"""The embedded store: every concern of parley.ports.Store on one SQLite file."""

from __future__ import annotations

from parley.adapters.sqlite.accounts import SqliteAccounts
from parley.adapters.sqlite.attachments import SqliteAttachments
from parley.adapters.sqlite.calls import SqliteCalls
from parley.adapters.sqlite.devices import SqliteDevices
from parley.adapters.sqlite.messages import SqliteMessages
from parley.adapters.sqlite.moderation import SqliteModeration
from parley.adapters.sqlite.sessions import SqliteSessions


class SqliteStore(SqliteMessages, SqliteAccounts, SqliteModeration, SqliteAttachments, SqliteSessions, SqliteCalls,
                  SqliteDevices):
    """Implements parley.ports.Store on one SQLite file (database.py: its connections and
    threads); each concern's tables in a module of their own."""
