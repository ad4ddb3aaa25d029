"""The Cassandra store's calls (migration 0010): every call by id (`calls`), each conversation's
live call (`live_calls`), the ring timers the calls role arms again when it starts
(`ring_timers`), the conversations' call settings, who takes part in a live call
(`call_members`), and the records of finished calls beside their messages (`message_calls`).
chat_core writes them in its batches (writes.py plans them); this module reads them."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from parley.adapters.cassandra.database import CassandraDatabase
from parley.adapters.cassandra.partitions import bucket_of
from parley.adapters.cassandra.writes import RING_HOUR_MS, RING_SHARDS, RING_TIMER_TTL_S
from parley.frames import CallRecord, Message, is_call_record
from parley.ports import RingingCall
from parley.records import Call, CallSettings, Facts

_call_decode = msgspec.msgpack.Decoder(Call).decode
_record_decode = msgspec.msgpack.Decoder(CallRecord).decode


class CassandraCalls(CassandraDatabase):
    """Implements parley.ports.CallStore, and the reads of calls the conversations' share."""

    async def ringing_calls(self, since: int, until: int) -> list[RingingCall]:
        if until - since > RING_TIMER_TTL_S * 1000:
            raise ValueError("ringing_calls looks back at most as long as ring timers live")
        hours = range(since // RING_HOUR_MS, (until - 1) // RING_HOUR_MS + 1) if until > since else range(0)
        pages = await self._gather(self._all("ring_timers_in", [shard, hour])
                                   for hour in hours for shard in range(RING_SHARDS))
        found = [RingingCall(str(conv), str(call), int(deadline))
                 for rows in pages for call, conv, deadline, ringing in rows
                 if ringing and since <= int(deadline) < until]
        return sorted(found, key=lambda r: (r.deadline, r.call))

    async def live_calls_of(self, user: str) -> list[str]:
        return sorted(str(row[0]) for row in await self._all("calls_of_user", [user]))

    async def call(self, call_id: str) -> Call | None:
        row = await self._one("call_get", [call_id])
        return None if row is None else _call_decode(row[0])

    async def _live_call(self, conv: str) -> Call | None:
        row = await self._one("live_call_get", [conv])
        return _call_decode(row[1]) if row is not None and row[0] else None

    async def _call_settings(self, conv: str) -> CallSettings:
        row = await self._one("call_settings_get", [conv])
        if row is None:
            return CallSettings()
        return CallSettings(enabled=bool(row[0]), max_participants=row[1], max_video_subscriptions=row[2])

    async def _calls(self, call_ids: Sequence[str], facts: Facts) -> None:
        for call in await self._gather(self.call(call_id) for call_id in call_ids):
            if call is not None:
                facts.calls[call.id] = call

    async def _in_calls(self, members: Sequence[str], facts: Facts) -> None:
        """The live calls `members` take part in (`call_members`), into `facts.in_calls`."""
        for user, rows in zip(members, await self._gather(self._all("calls_of_user", [u]) for u in members)):
            if rows:
                facts.in_calls.setdefault(user, set()).update(str(r[0]) for r in rows)

    async def _attach_calls(self, msgs: Sequence[Message]) -> None:
        """The records of the call messages among `msgs` (found by their cmid: only those are read)."""
        calls = [m for m in msgs if is_call_record(m)]
        rows = await self._gather(self._one("message_call_get", [m.conv, bucket_of(m.seq), m.seq]) for m in calls)
        for msg, row in zip(calls, rows):
            if row is not None:
                msg.kind, msg.call = "call", _record_decode(row[0])
