"""The SQLite store's calls: every call by id (`calls`, at most one live per conversation, which
a partial unique index enforces), the conversations' call settings (`call_settings`), and who
takes part in a live call (`call_members`, what makes a callee busy in another conversation).
chat_core reads them in its prefetch and writes them in its batches; the calls role reads the
calls that ring, the push decision a call by id."""

from __future__ import annotations

import sqlite3
from typing import Any

import msgspec

from parley.adapters.sqlite.database import SqliteDatabase, chunks, marks
from parley.ports import RingingCall
from parley.records import Call, CallSettings, DropCallMember, Facts, Needs, PutCall, PutCallMember, PutCallSettings

_call_encode = msgspec.msgpack.Encoder().encode
_call_decode = msgspec.msgpack.Decoder(Call).decode

# An upsert, not INSERT OR REPLACE: a second live call of a conversation must fail the batch
# (the partial unique index), not delete the first one.
PUT_CALL = ("INSERT INTO calls (id, conv, live, ringing_until, body) VALUES (?,?,?,?,?) ON CONFLICT (id) DO UPDATE "
            "SET live = excluded.live, ringing_until = excluded.ringing_until, body = excluded.body")
PUT_CALL_SETTINGS = ("INSERT OR REPLACE INTO call_settings (conv, enabled, max_participants, max_video_subscriptions) "
                     "VALUES (?,?,?,?)")
PUT_CALL_MEMBER = "INSERT INTO call_members (user, call, conv) VALUES (?,?,?) ON CONFLICT DO NOTHING"
DROP_CALL_MEMBER = "DELETE FROM call_members WHERE user = ? AND call = ?"


def put_call(m: PutCall) -> tuple[Any, ...]:
    call = m.call
    ringing_until = call.ring_deadline if call.live and call.ringing else None
    return call.id, call.conv, int(call.live), ringing_until, _call_encode(call)


def put_call_settings(m: PutCallSettings) -> tuple[Any, ...]:
    s = m.settings
    return m.conv, int(s.enabled), s.max_participants, s.max_video_subscriptions


def put_call_member(m: PutCallMember) -> tuple[Any, ...]:
    return m.user, m.call, m.conv


def drop_call_member(m: DropCallMember) -> tuple[Any, ...]:
    return m.user, m.call


def prefetch_calls(conn: sqlite3.Connection, needs: Needs, facts: Facts) -> None:
    """The live call and the call settings of the conversations read into `facts`, the calls
    `needs` names, and the live calls of the members of `needs.call_members`."""
    for part in chunks(sorted(c for c in needs.convs if c in facts.convs)):
        for conv, body in conn.execute(f"SELECT conv, body FROM calls WHERE live = 1 AND conv IN ({marks(len(part))})",
                                       part):
            facts.convs[conv].call = _call_decode(body)
        for conv, enabled, most, videos in conn.execute(
                "SELECT conv, enabled, max_participants, max_video_subscriptions FROM call_settings "
                f"WHERE conv IN ({marks(len(part))})", part):
            facts.convs[conv].call_settings = CallSettings(enabled=bool(enabled), max_participants=most,
                                                           max_video_subscriptions=videos)
    for part in chunks(sorted(needs.calls)):
        for body in conn.execute(f"SELECT body FROM calls WHERE id IN ({marks(len(part))})", part):
            call = _call_decode(body[0])
            facts.calls[call.id] = call
    for part in chunks(sorted(needs.call_members)):
        for user, call_id in conn.execute(
                "SELECT m.user, cm.call FROM members m JOIN call_members cm ON cm.user = m.user "
                f"WHERE m.conv IN ({marks(len(part))})", part):
            facts.in_calls.setdefault(user, set()).add(call_id)


class SqliteCalls(SqliteDatabase):
    """Implements parley.ports.CallStore."""

    async def ringing_calls(self, since: int, until: int) -> list[RingingCall]:
        def run(conn: sqlite3.Connection) -> list[RingingCall]:
            rows = conn.execute("SELECT conv, id, ringing_until FROM calls WHERE ringing_until >= ? "
                                "AND ringing_until < ? ORDER BY ringing_until", (since, until))
            return [RingingCall(conv, call, deadline) for conv, call, deadline in rows]
        return await self._read(run)

    async def live_calls_of(self, user: str) -> list[str]:
        def run(conn: sqlite3.Connection) -> list[str]:
            return [call for (call,) in conn.execute("SELECT call FROM call_members WHERE user = ? ORDER BY call",
                                                     (user,))]
        return await self._read(run)

    async def call(self, call_id: str) -> Call | None:
        def run(conn: sqlite3.Connection) -> Call | None:
            row = conn.execute("SELECT body FROM calls WHERE id = ?", (call_id,)).fetchone()
            return None if row is None else _call_decode(row[0])
        return await self._read(run)
