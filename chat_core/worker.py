"""chat_core's consumer loop: batch -> prefetch -> decide -> one durable write -> replies -> relay.

Group commit: every command of a batch is decided in memory, then the whole batch is written in
one store transaction, and only then is any command acknowledged. The log offset is committed
after the write, so a crash replays the batch and the idempotency key makes the replay harmless.
"""

from __future__ import annotations

import asyncio
import logging
import time

from chat_core.core import ChatCore
from chat_core.decide import Batch
from chat_core.relay import OutboxRelay
from parley import hops, tracing
from parley.backoff import wait_out
from parley.errors import Internal, ParleyError, Unavailable
from parley.frames import error_frame
from parley.health import count_refused
from parley.ports import GatewayBus, LogConsumer, MessageStore, Reply
from parley.records import Command, Facts

log = logging.getLogger(__name__)


class CommandWorker:
    def __init__(self, core: ChatCore, source: LogConsumer[Command], store: MessageStore, bus: GatewayBus,
                 relay: OutboxRelay, batch_max: int = 512, partitions: int = 1) -> None:
        self._core = core
        self._source = source
        self._store = store
        self._bus = bus
        self._relay = relay
        self._batch_max = batch_max
        self._partitions = partitions
        #: Partitions gained and lost since the worker last settled (the log's rebalance hooks).
        self._gained: set[int] = set()
        self._lost: set[int] = set()
        source.watch(self._assigned, self._revoked)

    def _assigned(self, partitions: set[int]) -> None:
        self._gained |= partitions

    def _revoked(self, partitions: set[int]) -> None:
        self._lost |= partitions
        self._gained -= partitions

    async def settle(self) -> None:
        """Act on rebalances: forget state another writer may change from now on (the store
        stays the truth), and replay the outbox of gained shards before deciding their commands."""
        if self._lost:
            lost, self._lost = self._lost, set()
            self._core.forget()
            self._relay.release(lost)
        while self._gained:
            gained = set(self._gained)
            try:
                await self._relay.adopt(gained)
            except ParleyError as err:  # the event log is down: their commands wait
                log.warning("outbox shards %s not adopted yet: %s", sorted(gained), err.message)
                await asyncio.sleep(0.5)
                continue
            self._gained -= gained

    async def run(self) -> None:
        while True:
            try:
                await self._one_batch()
            except Unavailable as err:
                # The log is away (a frozen broker, a group the coordinator forgot): what was not
                # committed is delivered again, to this consumer or the partition's next owner.
                await wait_out(err, log, "chat_core")

    async def _one_batch(self) -> None:
        await self.settle()
        cmds = await self._source.next_batch(self._batch_max)
        if not cmds:  # a rebalance woke the loop up
            return
        await self.settle()
        try:
            await self.process(cmds)
        except Exception:
            # A bug must cost one batch, not the writer: its clients hear `internal`, and
            # the cache (which the failed batch may have touched) is rebuilt from the store.
            log.exception("batch of %d commands failed", len(cmds))
            self._core.forget()
            await self._reply_all(cmds, Internal("internal error"))
        await self._source.commit()

    async def process(self, cmds: list[Command]) -> None:
        consumed_ns = time.time_ns()
        core = self._core
        try:
            needs = core.needs(cmds)
            facts = await self._store.prefetch(needs) if needs else Facts()
            core.absorb(facts)
        except ParleyError as err:
            await self._reply_all(cmds, err)
            return
        batch = core.begin()
        now = int(time.time() * 1000)
        replies = []
        # A span per traced command, from its consumption to its reply; its events carry it.
        spans = [tracing.follow("chat_core.command", cmd.trace, tracing.SpanKind.CONSUMER) for cmd in cmds]
        try:
            for cmd, span in zip(cmds, spans):
                batch.t_ns = hops.stamp(cmd.t_ns, hops.Stage.CORE_CONSUMED, consumed_ns)
                batch.trace = tracing.carried(span)
                with tracing.active(tracing.child("chat_core.decide", span)):  # validation and policy
                    replies.append(core.handle(cmd, facts, now, batch))
            await self._write(cmds, batch, replies, spans)
        finally:
            tracing.end_all([span for span in spans if span is not None])

    async def _write(self, cmds: list[Command], batch: Batch, replies: list[bytes],
                     spans: list[tracing.Step | None]) -> None:
        """The batch's one durable write, then the relay's share and the replies."""
        core = self._core
        mutations = batch.finish(core.convs, self._partitions)
        if mutations:
            write_ns = time.time_ns()
            try:
                outbox_ids = await self._store.apply(mutations)
            except ParleyError as err:
                # Nothing of the batch is stored: drop the cache (the store is the truth) and
                # let every client retry; their cmids make the retries safe.
                log.warning("batch of %d commands not stored: %s", len(cmds), err.message)
                core.forget()
                not_stored = Unavailable("not stored; retry", retry_after_ms=500)
                not_stored.__cause__ = err
                await self._reply_all(cmds, not_stored)
                return
            core.committed(batch)
            stored_ns = time.time_ns()
            for span in spans:  # the batch's write, in the trace of each of its commands
                tracing.record("store.write", span, write_ns, stored_ns)
            self._relay.enqueue([(row.shard, outbox_id, hops.restamp(row.record, hops.Stage.STORED, stored_ns))
                                 for outbox_id, row in zip(outbox_ids, batch.outbox)])
        for cmd, frame in zip(cmds, replies):
            await self._bus.to_gateway(cmd.gateway, Reply(cmd.session, cmd.body.rid, frame))

    async def _reply_all(self, cmds: list[Command], err: ParleyError) -> None:
        count_refused(err, len(cmds))
        for cmd in cmds:
            await self._bus.to_gateway(cmd.gateway, Reply(cmd.session, cmd.body.rid, error_frame(err, cmd.body.rid)))
