"""The outbox relay: stored events -> the event log, in outbox order, at least once.

Events of a committed batch arrive in memory (`enqueue`), so the normal path never reads the
outbox back; on start the relay replays whatever is past its checkpoint (a crash between the
store write and the publish). The checkpoint advances lazily: a replayed event is harmless,
clients de-duplicate by (conv, seq).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

from parley.errors import ParleyError
from parley.ports import LogProducer, Store
from parley.records import EventRecord

log = logging.getLogger(__name__)


class OutboxRelay:
    def __init__(self, store: Store, events: LogProducer[EventRecord], checkpoint_every_s: float = 0.5,
                 replay_page: int = 1000) -> None:
        self._store = store
        self._events = events
        self._pending: deque[tuple[int, EventRecord]] = deque()
        self._ready = asyncio.Event()
        self._relayed = 0
        self._checkpointed = 0
        self._checkpoint_every_s = checkpoint_every_s
        self._replay_page = replay_page

    async def start(self) -> None:
        """Replay what a previous run stored but may not have relayed. Call before the worker runs."""
        self._relayed = self._checkpointed = await self._store.relay_checkpoint()
        while page := await self._store.outbox_after(self._relayed, self._replay_page):
            for outbox_id, record in page:
                await self._events.publish(record)
                self._relayed = outbox_id

    def enqueue(self, items: list[tuple[int, EventRecord]]) -> None:
        self._pending.extend(items)
        self._ready.set()

    async def run(self) -> None:
        last_checkpoint = time.monotonic()
        while True:
            if not self._pending:
                self._ready.clear()
                try:
                    await asyncio.wait_for(self._ready.wait(), self._checkpoint_every_s)
                except TimeoutError:
                    pass
            try:
                await self._drain()
            except ParleyError:  # the event log is down or full: keep the events, try again
                await asyncio.sleep(0.1)
                continue
            if time.monotonic() - last_checkpoint >= self._checkpoint_every_s:
                try:
                    await self.checkpoint()
                except Exception:  # lazy by design: a missed checkpoint only means more replay
                    log.warning("relay checkpoint not recorded; retrying later", exc_info=True)
                last_checkpoint = time.monotonic()

    async def _drain(self) -> None:
        pending = self._pending
        while pending:
            outbox_id, record = pending[0]
            if outbox_id > self._relayed:
                await self._events.publish(record)  # raises while the log is down: retried next round
                self._relayed = outbox_id
            pending.popleft()

    async def checkpoint(self) -> None:
        if self._relayed > self._checkpointed:
            await self._store.set_relay_checkpoint(self._relayed)
            self._checkpointed = self._relayed

    async def flush(self) -> None:
        """Relay everything pending and record the checkpoint (graceful shutdown)."""
        await self._drain()
        await self.checkpoint()
