"""Rate limits on top of the `limits` library (moving window; in-memory or Redis storage)."""

from __future__ import annotations

import math
import time

from limits import RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

from parley.errors import RateLimited, Unavailable


class Limiter:
    """`burst` hits per `window_s` seconds per key: 100 per 5 s allows bursts of 100 and
    20/s sustained. Scale-out passes a Redis storage so every gateway shares the counts."""

    def __init__(self, name: str, burst: int, window_s: int, storage: Storage | None = None) -> None:
        self._name = name
        self._item = RateLimitItemPerSecond(burst, window_s)
        self._limiter = MovingWindowRateLimiter(storage or MemoryStorage())

    async def hit(self, key: str) -> None:
        try:
            if await self._limiter.hit(self._item, self._name, key):
                return
            stats = await self._limiter.get_window_stats(self._item, self._name, key)
        except StorageError as err:  # the shared (Redis) storage is down: retry, don't guess
            raise Unavailable("rate limits cannot be checked; retry", retry_after_ms=1000) from err
        retry_ms = max(1, math.ceil((stats.reset_time - time.time()) * 1000))
        raise RateLimited(f"too many {self._name} requests; retry in {retry_ms} ms", retry_after_ms=retry_ms)
