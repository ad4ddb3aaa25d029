"""The delivery worker: consumes `parley.events` in order and fans each event out."""

from __future__ import annotations

import asyncio
import logging
import time

from delivery.fanout import Fanout
from parley import hops
from parley.errors import Unavailable
from parley.ports import LogConsumer
from parley.records import EventRecord

log = logging.getLogger(__name__)


class DeliveryWorker:
    def __init__(self, source: LogConsumer[EventRecord], fanout: Fanout, batch_max: int = 1024) -> None:
        self._source = source
        self._fanout = fanout
        self._batch_max = batch_max

    async def run(self) -> None:
        while True:
            records = await self._source.next_batch(self._batch_max)
            consumed_ns = time.time_ns()
            for record in records:
                await self._deliver(hops.restamp(record, hops.Stage.DELIVERY_CONSUMED, consumed_ns))
            await self._source.commit()

    async def _deliver(self, record: EventRecord) -> None:
        while True:
            try:
                if record.members_changed:
                    await self._fanout.members.invalidate(record.conv)
                await self._fanout.send(record)
                return
            except Unavailable as err:
                # Presence or the bus is away: wait for it rather than drop the event. The log
                # holds what comes next, so nothing piles up here.
                log.warning("delivery waits %d ms: %s", err.retry_after_ms or 1000, err.message)
                await asyncio.sleep((err.retry_after_ms or 1000) / 1000)
            except Exception:
                # One event that cannot be fanned out must not stop the others; its recipients
                # recover it with `sync` (it is stored).
                log.exception("event of %s not delivered", record.conv)
                return
