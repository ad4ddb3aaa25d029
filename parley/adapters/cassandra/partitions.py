"""How the Cassandra store spreads rows over partitions: messages by seq bucket, the outbox and
the audit log by the time in their ids (IdClock: time-ordered ints)."""

from __future__ import annotations

import time

#: Messages per partition: bucket = seq // MESSAGE_BUCKET (the `messages` table of 0001_initial.cql).
MESSAGE_BUCKET = 16384
#: Outbox partitions are (shard, time bucket of the id), ten minutes each.
OUTBOX_BUCKET_MS = 600_000
#: Ids are (ms since ID_EPOCH_MS) << ID_SHIFT | a counter: time-ordered, ~2^22 ids per ms.
ID_EPOCH_MS = 1_577_836_800_000  # 2020-01-01
ID_SHIFT = 22
#: Audit partitions are (scope, day of the id).
DAY_MS = 86_400_000


def bucket_of(seq: int) -> int:
    return seq // MESSAGE_BUCKET


def id_ms(id_: int) -> int:
    """The wall-clock ms an id was made at."""
    return (id_ >> ID_SHIFT) + ID_EPOCH_MS


def outbox_tb(id_: int) -> int:
    return id_ms(id_) // OUTBOX_BUCKET_MS


class IdClock:
    """Time-ordered int ids: (ms since 2020) << 22 | counter, strictly increasing per clock.

    Outbox ids must increase within a shard in write order. A shard has one writer, the
    chat_core owning its log partition, and that writer's clock makes every id larger than the
    last it made. A new owner could run on a host whose clock is behind the old owner's, so a
    clock also never goes below a floor: the largest id the store has seen in the shard (its
    checkpoint and the rows replayed when the relay adopts the shard, which it does before the
    writer decides any command of the partition). So a replay past the checkpoint finds every
    row written after it.
    """

    def __init__(self) -> None:
        self._last = 0

    def next(self, floor: int = 0) -> int:
        now = (int(time.time() * 1000) - ID_EPOCH_MS) << ID_SHIFT
        self._last = max(now, self._last + 1, floor + 1)
        return self._last

    def now(self) -> int:
        return (int(time.time() * 1000) - ID_EPOCH_MS) << ID_SHIFT

