"""Rate limits: `burst` hits per `window_s` seconds per key (100 per 5 s allows bursts of 100 and
20/s sustained).

Shared by every gateway (scale-out): the `limits` library's moving window on Redis. A gateway
takes its hits from Redis a few at a time (a lease of `burst // LEASE_SHARE` hits, reserved in
the shared window and spent locally until that window passes): at 500 sends/s the round trip
per send was 18% of a gateway's time. The count stays one count across gateways, exact to
within what a gateway holds unspent: a lease (4% of the limit) when a key's hits come one at a
time, more while many arrive at once (their reservations add up). Limits of fewer than
LEASE_SHARE hits are exact.

In one process: GCRA, one float per key. Why not `limits` there too: its in-memory storages
sweep every key on a timer or after each hit (the asyncio one with a thread hop per key);
profiled under load that was a quarter of the event loop's time, where GCRA is a few float
operations.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from limits import RateLimitItemPerSecond
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

from parley import metrics
from parley.errors import RateLimited, Unavailable

Clock = Callable[[], float]
#: Keys idle for longer than their window are dropped every this many hits (bounded memory).
PRUNE_EVERY = 4096
#: A lease is this fraction of the limit (1/25: 4 of a 100-hit burst).
LEASE_SHARE = 25


class Gcra:
    """The generic cell rate algorithm: each key holds its theoretical arrival time (TAT); a hit
    is allowed while TAT - now <= window - interval, and moves TAT one interval on."""

    def __init__(self, burst: int, window_s: float, clock: Clock = time.monotonic) -> None:
        self._interval = window_s / burst
        self._tolerance = window_s - self._interval
        self._window_s = window_s
        self._clock = clock
        self._tat: dict[str, float] = {}
        self._hits = 0

    def hit(self, key: str) -> float:
        """0 if allowed (and counted), else the seconds until a hit would be allowed."""
        now = self._clock()
        tat = max(self._tat.get(key, now), now)
        wait = tat - self._tolerance - now
        if wait > 0:
            return wait
        self._tat[key] = tat + self._interval
        self._hits += 1
        if self._hits % PRUNE_EVERY == 0:
            self._prune(now)
        return 0.0

    def _prune(self, now: float) -> None:
        # A key whose TAT has passed is as good as absent: forgetting it changes no decision.
        self._tat = {k: t for k, t in self._tat.items() if t > now}

    def forget(self, key: str) -> None:
        self._tat.pop(key, None)


class Limiter:
    """Raises RateLimited (with when to retry) past the limit; Unavailable if the shared
    storage cannot be reached (retry, don't guess)."""

    def __init__(self, name: str, burst: int, window_s: int, storage: Storage | None = None,
                 *, clock: Clock = time.monotonic) -> None:
        self._name = name
        self._window_s = window_s
        self._clock = clock
        self._local = Gcra(burst, window_s, clock) if storage is None else None
        self._item = RateLimitItemPerSecond(burst, window_s)
        self._shared = MovingWindowRateLimiter(storage) if storage is not None else None
        lease = max(1, burst // LEASE_SHARE)
        #: What to reserve when no lease is left: a whole lease, else the window's last hits.
        self._takes = (lease, 1) if lease > 1 else (1,)
        #: key -> (hits left in its lease, when the lease's reservation leaves the shared window)
        self._leases: dict[str, tuple[int, float]] = {}
        #: key -> when the shared window frees a hit again, for keys it refused
        self._refused: dict[str, float] = {}
        self._hits = 0

    async def hit(self, key: str) -> None:
        if self._local is not None:
            wait_s = self._local.hit(key)
            if wait_s:
                self._refuse(math.ceil(wait_s * 1000))
            return
        now = self._clock()
        self._hits += 1
        if self._hits % PRUNE_EVERY == 0:
            self._prune(now)
        left, until = self._leases.get(key, (0, 0.0))
        if left and now < until:
            self._spend(key, left, until)
            return
        # The shared window frees no hit before the time it gave: refuse until then without asking
        # (a client that keeps hammering past its limit costs no round trips).
        refused_until = self._refused.get(key, 0.0)
        if now < refused_until:
            self._refuse(math.ceil((refused_until - now) * 1000))
        assert self._shared is not None
        try:
            for take in self._takes:
                if await self._shared.hit(self._item, self._name, key, cost=take):
                    self._spend(key, *self._merged(key, take, now))
                    return
            stats = await self._shared.get_window_stats(self._item, self._name, key)
        except StorageError as err:
            raise Unavailable("rate limits cannot be checked; retry", retry_after_ms=1000) from err
        wait_s = max(0.0, stats.reset_time - time.time())
        self._refused[key] = now + wait_s
        self._refuse(math.ceil(wait_s * 1000))

    async def reset(self, key: str) -> None:
        """Forget `key`'s hits, here and in the shared window (a login that succeeded clears its
        username's count)."""
        if self._local is not None:
            self._local.forget(key)
            return
        self._leases.pop(key, None)
        self._refused.pop(key, None)
        assert self._shared is not None
        try:
            await self._shared.clear(self._item, self._name, key)
        except StorageError as err:
            raise Unavailable("rate limits cannot be checked; retry", retry_after_ms=1000) from err

    def _merged(self, key: str, took: int, now: float) -> tuple[int, float]:
        """A reservation made at `now`, joined with one that another hit of the key made
        meanwhile (both were counted in the shared window): the hits of both, until the earlier
        one leaves it. A lease that has left the window already is not joined: it is spent."""
        until = now + self._window_s
        left, until_before = self._leases.get(key, (0, 0.0))
        return (took + left, until_before) if left and now < until_before else (took, until)

    def _spend(self, key: str, left: int, until: float) -> None:
        if left > 1:
            self._leases[key] = (left - 1, until)
        else:
            self._leases.pop(key, None)

    def _prune(self, now: float) -> None:
        self._leases = {k: lease for k, lease in self._leases.items() if lease[1] > now}
        self._refused = {k: until for k, until in self._refused.items() if until > now}

    def _refuse(self, retry_ms: int) -> None:
        retry_ms = max(1, retry_ms)
        metrics.RATE_LIMITED.labels(self._name).inc()
        raise RateLimited(f"too many {self._name} requests; retry in {retry_ms} ms", retry_after_ms=retry_ms)
