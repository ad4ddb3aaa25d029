"""Delivered receipts from clients: `received` {conv, seq} requests are answered at once and
gathered per (conversation, user), the highest seq kept; every RECEIVED_FLUSH_S the gateway sends
one command per pair to the conversation's writer, which moves the member's delivered cursor.
A client may acknowledge every message it gets: the writer sees at most one command per
conversation and user per interval, whatever the number of messages, devices or sessions."""

from __future__ import annotations

import asyncio
import logging

from parley import frames as F
from parley.errors import ParleyError, RateLimited
from parley.limits import RECEIVED_FLUSH_S
from parley.ports import LogProducer
from parley.records import Command

log = logging.getLogger(__name__)

#: The session of these commands: none, so their replies (only refusals matter: not a member)
#: reach no one.
NO_SESSION = ""
#: Pairs held between two flushes; past it a `received` is refused `rate_limited` until the next.
PENDING_MAX = 50_000


class ReceivedAcks:
    def __init__(self, commands: LogProducer[Command], gateway_id: str, flush_s: float = RECEIVED_FLUSH_S,
                 pending_max: int = PENDING_MAX) -> None:
        self._commands = commands
        self._gateway_id = gateway_id
        self._flush_s = flush_s
        self._pending_max = pending_max
        self._pending: dict[tuple[str, str], int] = {}

    def note(self, user: str, conv: str, seq: int) -> None:
        key = (conv, user)
        held = self._pending.get(key)
        if held is None:
            if len(self._pending) >= self._pending_max:
                raise RateLimited("too many receipts at once; send it again", retry_after_ms=int(self._flush_s * 1000))
            self._pending[key] = seq
        elif seq > held:
            self._pending[key] = seq

    async def flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        cmds = [Command(conv, user, self._gateway_id, NO_SESSION, F.Received(rid="received", conv=conv, seq=seq))
                for (conv, user), seq in pending.items()]
        try:
            await self._commands.publish_many(cmds)
        except ParleyError:
            # Delivered cursors only move forward and the next acknowledgement carries a higher
            # seq: a lost batch costs a late tick, not a wrong one.
            log.warning("%d delivered receipts not sent on", len(cmds), exc_info=True)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._flush_s)
            await self.flush()
