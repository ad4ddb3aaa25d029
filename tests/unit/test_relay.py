"""The outbox relay publishes what is pending in bursts, in order, and loses nothing on failure."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, cast

import pytest
from prometheus_client import REGISTRY

from chat_core.relay import OutboxRelay
from parley import hops
from parley.errors import Unavailable
from parley.ports import Store
from parley.records import EventRecord


class Outbox:
    """The three store calls the relay makes."""

    def __init__(self, rows: dict[int, list[tuple[int, EventRecord]]] | None = None) -> None:
        self.rows = rows or {}
        self.checkpoints: dict[int, int] = {}

    async def relay_checkpoint(self, shard: int) -> int:
        return self.checkpoints.get(shard, 0)

    async def set_relay_checkpoint(self, shard: int, outbox_id: int) -> None:
        self.checkpoints[shard] = outbox_id

    async def outbox_after(self, shard: int, after: int, limit: int) -> list[tuple[int, EventRecord]]:
        return [row for row in self.rows.get(shard, []) if row[0] > after][:limit]


class Log:
    def __init__(self) -> None:
        self.bursts: list[list[EventRecord]] = []
        self.down = False

    async def publish(self, item: EventRecord) -> None:
        await self.publish_many([item])

    async def publish_many(self, items: Sequence[EventRecord]) -> None:
        if self.down:
            raise Unavailable("down", retry_after_ms=10)
        self.bursts.append(list(items))

    def published(self) -> list[str]:
        return [r.frame.decode() for burst in self.bursts for r in burst]


def relay(outbox: Outbox, log: Log, **kw: Any) -> OutboxRelay:
    return OutboxRelay(cast(Store, outbox), log, **kw)


def rec(n: int) -> EventRecord:
    return EventRecord(f"c{n % 3}", str(n).encode())


async def test_pending_events_go_out_as_one_burst_in_order_and_advance_checkpoints() -> None:
    outbox, log = Outbox(), Log()
    r = relay(outbox, log)
    await r.adopt({0, 1})
    r.enqueue([(n % 2, n, rec(n)) for n in range(1, 101)])
    await r.flush()
    assert len(log.bursts) == 1
    assert log.published() == [str(n) for n in range(1, 101)]
    assert outbox.checkpoints == {0: 100, 1: 99}


async def test_bursts_are_capped_and_a_failed_burst_stays_pending() -> None:
    outbox, log = Outbox(), Log()
    r = relay(outbox, log, burst_max=40)
    await r.adopt({0})
    r.enqueue([(0, n, rec(n)) for n in range(1, 101)])
    log.down = True
    with pytest.raises(Unavailable):
        await r.flush()
    assert outbox.checkpoints == {}
    log.down = False
    await r.flush()
    assert [len(b) for b in log.bursts] == [40, 40, 20]
    assert log.published() == [str(n) for n in range(1, 101)]
    assert outbox.checkpoints == {0: 100}


async def test_a_retried_burst_observes_each_event_s_outbox_wait_once() -> None:
    outbox, log = Outbox(), Log()
    r = relay(outbox, log)
    await r.adopt({0})
    stored = [time.time_ns()] * hops.Stage.RELAY_PUBLISH  # stamped up to STORED
    r.enqueue([(0, n, EventRecord("c", b"{}", t_ns=stored)) for n in range(1, 11)])
    before = REGISTRY.get_sample_value("parley_hop_seconds_count", {"hop": "outbox_wait"}) or 0.0
    log.down = True
    with pytest.raises(Unavailable):
        await r.flush()
    log.down = False
    await r.flush()
    after = REGISTRY.get_sample_value("parley_hop_seconds_count", {"hop": "outbox_wait"})
    assert after == before + 10
    assert all(len(record.t_ns) == hops.Stage.RELAY_PUBLISH + 1 for record in log.bursts[0])


async def test_adopting_a_shard_replays_past_its_checkpoint_and_skips_what_is_replayed() -> None:
    outbox, log = Outbox({0: [(n, rec(n)) for n in range(1, 8)]}), Log()
    outbox.checkpoints[0] = 3
    r = relay(outbox, log, replay_page=2)
    await r.adopt({0})
    assert log.published() == ["4", "5", "6", "7"]
    r.enqueue([(0, n, rec(n)) for n in range(6, 10)])  # 6 and 7 were replayed already
    await r.flush()
    assert log.published() == ["4", "5", "6", "7", "8", "9"]
    assert outbox.checkpoints[0] == 9
