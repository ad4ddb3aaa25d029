"""The delivery worker: consumes `parley.events` in order and fans out each batch at once."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from delivery.fanout import Fanout, Outgoing, Resolved
from parley import hops, tracing
from parley.backoff import wait_out
from parley.errors import Unavailable
from parley.ports import LogConsumer
from parley.records import EventRecord

log = logging.getLogger(__name__)


class DeliveryWorker:
    """Failure semantics: while presence, member lists or the bus are away (`Unavailable`) it
    waits and retries what is left, dropping nothing; the log holds what comes next, so nothing
    piles up here. Any other failure costs only the event it hits (logged): its recipients
    recover it with `sync`, since it is stored."""

    def __init__(self, source: LogConsumer[EventRecord], fanout: Fanout, batch_max: int = 1024) -> None:
        self._source = source
        self._fanout = fanout
        self._batch_max = batch_max

    async def run(self) -> None:
        while True:
            try:
                records = await self._source.next_batch(self._batch_max)
                consumed_ns = time.time_ns()
                # A span per traced event, over its fan-out; the bus messages carry it.
                traced, spans = tracing.hop(records, "delivery.fanout", tracing.SpanKind.CONSUMER)
                try:
                    await self.deliver([hops.restamp(r, hops.Stage.DELIVERY_CONSUMED, consumed_ns) for r in traced])
                finally:
                    tracing.end_all(spans)
                await self._source.commit()
            except Unavailable as err:  # the log is away: what was not committed comes again
                await wait_out(err, log, "delivery")

    async def deliver(self, records: Sequence[EventRecord]) -> None:
        """One presence lookup for the batch, then its bus messages in event order."""
        try:
            planned = await self._plan(records)
        except Exception:
            if len(records) == 1:
                log.exception("event of %s not delivered", records[0].conv)
                return
            # The lookup for the whole batch failed: look each event up alone, so only the
            # event it fails on is lost.
            for record in records:
                await self.deliver([record])
            return
        for out in planned:
            await self._publish(out)

    async def _plan(self, records: Sequence[EventRecord]) -> list[Outgoing]:
        while True:
            try:
                resolved: list[Resolved] = []
                refreshed: set[str] = set()
                for record in records:  # in order: a membership change applies to what follows it
                    try:
                        resolved.append((record, await self._fanout.resolve(record, refreshed)))
                    except Unavailable:
                        raise
                    except Exception:
                        log.exception("event of %s not delivered", record.conv)
                return await self._fanout.plan(resolved)
            except Unavailable as err:  # nothing is sent yet: plan the whole batch again
                await wait_out(err, log, "delivery")

    async def _publish(self, out: Outgoing) -> None:
        while True:
            try:
                await self._fanout.publish(out)
                return
            except Unavailable as err:
                await wait_out(err, log, "delivery")
            except Exception:
                log.exception("an event not delivered (%s %s)", type(out).__name__, out[0])
                return
