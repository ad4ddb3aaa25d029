"""The delivery worker: consumes `parley.events` in order and fans each event out."""

from __future__ import annotations

from delivery.fanout import Fanout
from parley.ports import LogConsumer
from parley.records import EventRecord


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
                await self._fanout.send(record)
            await self._source.commit()
