"""The outbox relay: stored events -> the event log, in outbox order per shard, at least once.

The outbox is sharded like the command log (shard = partition of the conversation), so the
chat_core consuming a partition is the one relay of its shard and owns its checkpoint. Events
of a committed batch arrive in memory (`enqueue`), so the normal path never reads the outbox
back; when a shard is adopted (at start, or after a rebalance) the relay first replays whatever
is past its checkpoint: a crash between the store write and the publish, or a previous owner
that stopped early. The checkpoint advances lazily: a replayed event is harmless, clients
de-duplicate by (conv, seq).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque

from parley import hops, metrics, tracing
from parley.errors import ParleyError
from parley.ports import LogProducer, MessageStore
from parley.records import EventRecord

log = logging.getLogger(__name__)

Pending = tuple[int, int, EventRecord]  # (shard, outbox id, record)


class OutboxRelay:
    def __init__(self, store: MessageStore, events: LogProducer[EventRecord], checkpoint_every_s: float = 0.5,
                 replay_page: int = 1000, burst_max: int = 2048) -> None:
        self._store = store
        self._events = events
        self._pending: deque[Pending] = deque()
        self._ready = asyncio.Event()
        #: Per owned shard: the last outbox id published, and the last one recorded.
        self._relayed: dict[int, int] = {}
        self._checkpointed: dict[int, int] = {}
        self._checkpoint_every_s = checkpoint_every_s
        self._replay_page = replay_page
        self._burst_max = burst_max
        metrics.OUTBOX_PENDING.set_function(lambda: len(self._pending))
        metrics.OUTBOX_AGE.set_function(self._oldest_age_s)

    def _oldest_age_s(self) -> float:
        """Since the oldest pending event was stored (its STORED stamp), at scrape time."""
        if not self._pending:
            return 0.0
        t_ns = self._pending[0][2].t_ns
        return (time.time_ns() - t_ns[hops.Stage.STORED]) / 1e9 if len(t_ns) > hops.Stage.STORED else 0.0

    def shards(self) -> set[int]:
        return set(self._relayed)

    async def adopt(self, shards: set[int]) -> None:
        """Own these shards: replay what is stored past each one's checkpoint. Call before the
        worker decides commands of their partitions, so their events keep store order."""
        for shard in sorted(shards - self._relayed.keys()):
            relayed = await self._store.relay_checkpoint(shard)
            self._checkpointed[shard] = relayed
            while page := await self._store.outbox_after(shard, relayed, self._replay_page):
                # A replayed event continues the trace its row carries (its writer may be gone).
                records, spans = tracing.hop([record for _, record in page], "relay.replay", tracing.SpanKind.PRODUCER)
                try:
                    await self._events.publish_many(records)
                finally:
                    tracing.end_all(spans)
                relayed = page[-1][0]
            self._relayed[shard] = relayed

    def release(self, shards: set[int]) -> None:
        """Another relay owns these shards now. What is pending is still published (it is
        stored, so at worst the new owner replays it too), but no longer checkpointed here."""
        for shard in shards:
            self._relayed.pop(shard, None)
            self._checkpointed.pop(shard, None)

    def enqueue(self, items: list[Pending]) -> None:
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
        pending, relayed = self._pending, self._relayed
        while pending:
            # What is pending goes out as one burst, sharing the log's round trips (one publish
            # at a time capped the relay at one round trip per event). Outbox ids rise within a
            # shard, so checking each against the checkpoint from before the burst is exact.
            burst = list(itertools.islice(pending, self._burst_max))
            fresh = []
            for i, (shard, outbox_id, record) in enumerate(burst):
                if outbox_id > relayed.get(shard, 0):
                    # Stamped in place: a burst retried after a failure is not observed again.
                    pending[i] = item = (shard, outbox_id, hops.restamp(record, hops.Stage.RELAY_PUBLISH))
                    fresh.append(item)
            if fresh:
                records, spans = tracing.hop([record for _, _, record in fresh], "relay.publish",
                                             tracing.SpanKind.PRODUCER)
                try:
                    with hops.RELAY_ACK.time():
                        # raises while the log is down: retried next round
                        await self._events.publish_many(records)
                finally:
                    tracing.end_all(spans)
                for shard, outbox_id, _ in fresh:
                    if shard in relayed:
                        relayed[shard] = outbox_id
            for _ in burst:
                pending.popleft()

    async def checkpoint(self) -> None:
        for shard, relayed in list(self._relayed.items()):
            if relayed > self._checkpointed.get(shard, 0):
                await self._store.set_relay_checkpoint(shard, relayed)
                if shard in self._checkpointed:
                    self._checkpointed[shard] = relayed

    async def flush(self) -> None:
        """Relay everything pending and record the checkpoints (graceful shutdown)."""
        await self._drain()
        await self.checkpoint()
