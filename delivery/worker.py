"""The delivery worker: consumes `parley.events` in order and fans each event out."""

from __future__ import annotations

import logging

from delivery.fanout import Fanout
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
            for record in records:
                if record.members_changed:
                    self._fanout.members.invalidate(record.conv)
                try:
                    await self._fanout.send(record)
                except Exception:
                    # One event that cannot be fanned out must not stop the others; its
                    # recipients recover it with `sync` (it is stored).
                    log.exception("event of %s not delivered", record.conv)
            await self._source.commit()
