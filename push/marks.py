"""Which pushes were sent already, by `PushRequest.dedup_key`, for a while (the TTL): what lets
a push worker that crashed mid-batch consume the batch again without sending twice.

In memory for `parley dev` (one process: a crash loses the in-process log too, so nothing is
consumed twice); in Redis for the scale-out topology, shared by every push worker, so a batch
that moves to another worker after a crash is known there too.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Protocol

from redis.asyncio import Redis

from parley.topics import PUSH_SENT_PREFIX

#: The in-memory marks kept at most (oldest dropped first).
MEMORY_MARKS_MAX = 1_000_000


class SentMarks(Protocol):
    async def sent(self, keys: Sequence[str]) -> list[bool]: ...  # one answer per key, in order
    async def mark(self, keys: Sequence[str]) -> None: ...


class MemorySentMarks:
    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._until: OrderedDict[str, float] = OrderedDict()

    async def sent(self, keys: Sequence[str]) -> list[bool]:
        now = self._clock()
        return [self._until.get(k, 0.0) > now for k in keys]

    async def mark(self, keys: Sequence[str]) -> None:
        until = self._clock() + self._ttl_s
        for key in keys:
            self._until[key] = until
            self._until.move_to_end(key)
        while len(self._until) > MEMORY_MARKS_MAX:
            self._until.popitem(last=False)


class RedisSentMarks:
    def __init__(self, redis: Redis, ttl_s: int) -> None:
        self._redis = redis
        self._ttl_s = ttl_s

    async def sent(self, keys: Sequence[str]) -> list[bool]:
        if not keys:
            return []
        found = await self._redis.mget([PUSH_SENT_PREFIX + k for k in keys])
        return [v is not None for v in found]

    async def mark(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.set(PUSH_SENT_PREFIX + key, b"1", ex=self._ttl_s)
            await pipe.execute()
