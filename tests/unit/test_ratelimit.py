"""The in-process limit (GCRA): bursts up to `burst`, then `burst / window` per second; the
shared one (several gateways on one storage) spends leases without exceeding the limit."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from parley.errors import RateLimited
from parley.ratelimit import PRUNE_EVERY, Gcra, Limiter

_names = itertools.count()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_full_burst_passes_then_one_more_waits_one_interval():
    clock = Clock()
    gcra = Gcra(burst=100, window_s=5, clock=clock)
    assert [gcra.hit("u") for _ in range(100)] == [0.0] * 100
    assert gcra.hit("u") == pytest.approx(0.05)  # 5 s / 100
    clock.now += 0.05
    assert gcra.hit("u") == 0.0
    assert gcra.hit("u") > 0


def test_the_sustained_rate_is_burst_per_window():
    clock = Clock()
    gcra = Gcra(burst=100, window_s=5, clock=clock)
    allowed = 0
    for _ in range(10 * 1000):  # 10 s at 1,000 attempts per second
        clock.now += 0.001
        allowed += gcra.hit("u") == 0.0
    assert allowed == pytest.approx(100 + 10 * 20, abs=2)  # the burst, then 20/s


def test_keys_are_independent_and_refusals_are_not_counted():
    clock = Clock()
    gcra = Gcra(burst=2, window_s=10, clock=clock)
    assert gcra.hit("a") == gcra.hit("a") == 0.0
    for _ in range(5):
        assert gcra.hit("a") == pytest.approx(5.0)  # refused hits do not push it further
    assert gcra.hit("b") == 0.0


def test_pruning_forgets_idle_keys_and_keeps_limited_ones():
    clock = Clock()
    gcra = Gcra(burst=1, window_s=10, clock=clock)
    for n in range(PRUNE_EVERY - 1):
        gcra.hit(f"idle{n}")
    clock.now += 60  # every idle key's window has passed
    assert gcra.hit("busy") == 0.0  # the PRUNE_EVERY-th hit prunes
    assert list(gcra._tat) == ["busy"]
    assert gcra.hit("busy") == pytest.approx(10.0)  # still limited: its state was kept


async def test_the_limiter_says_when_to_retry():
    limiter = Limiter("send", burst=1, window_s=2)
    await limiter.hit("u")
    with pytest.raises(RateLimited) as refused:
        await limiter.hit("u")
    assert 1900 <= refused.value.retry_after_ms <= 2000


# ---- the shared limit, on the `limits` library's own in-memory storage ------------------------

STORAGE = MemoryStorage()


def shared_limiters(n: int, burst: int, clock: Clock) -> list[Limiter]:
    """`n` gateways' limiters on one shared storage."""
    name = f"send{next(_names)}"
    return [Limiter(name, burst=burst, window_s=5, storage=STORAGE, clock=clock) for _ in range(n)]


async def remaining(limiter: Limiter, key: str) -> int:
    """What the shared window has left for `key`, as the library reads it."""
    stats = await MovingWindowRateLimiter(STORAGE).get_window_stats(limiter._item, limiter._name, key)
    return stats.remaining


async def admitted(limiter: Limiter, key: str, tries: int) -> int:
    ok = 0
    for _ in range(tries):
        try:
            await limiter.hit(key)
            ok += 1
        except RateLimited:
            pass
    return ok


async def test_a_gateway_reserves_a_lease_and_spends_it_locally():
    (limiter,) = shared_limiters(1, burst=100, clock=Clock())
    left = []
    for _ in range(5):
        await limiter.hit("u")
        left.append(await remaining(limiter, "u"))
    assert left == [96, 96, 96, 96, 92]  # one reservation of 4 per 4 hits


async def test_gateways_sharing_the_storage_never_admit_more_than_the_limit():
    clock = Clock()
    a, b = shared_limiters(2, burst=100, clock=clock)
    assert await admitted(a, "u", 1) == 1  # a holds 3 more in its lease
    got_b = await admitted(b, "u", 200)
    got_a = await admitted(a, "u", 200)
    assert got_a + 1 + got_b == 100  # one count across gateways
    assert got_b >= 100 - 4  # refused early by at most the other gateway's unspent lease


async def test_the_last_hits_of_a_window_are_taken_one_at_a_time():
    a, b = shared_limiters(2, burst=100, clock=Clock())
    assert await admitted(a, "u", 98) == 98  # 25 leases reserved: 2 hits left in a's last
    assert await admitted(b, "u", 5) == 0
    assert await admitted(a, "u", 5) == 2


async def test_a_lease_ends_with_its_window():
    clock = Clock()
    (limiter,) = shared_limiters(1, burst=100, clock=clock)
    await limiter.hit("u")
    clock.now += 5  # the reservation has left the shared window (by this limiter's clock)
    await limiter.hit("u")  # so the 3 unspent hits are not spent: a new lease is reserved
    assert await remaining(limiter, "u") == 92
    for _ in range(3):  # ... and spent, without joining the one that ended
        await limiter.hit("u")
    assert await remaining(limiter, "u") == 92


async def test_small_limits_are_exact():
    a, b = shared_limiters(2, burst=10, clock=Clock())
    assert await admitted(a, "u", 1) == 1
    assert await admitted(b, "u", 20) == 9
    assert await admitted(a, "u", 20) == 0


class RoundTripStorage(MemoryStorage):
    """Yields to the loop before answering, as a network round trip does."""

    async def acquire_entry(self, *args: Any, **kwargs: Any) -> bool:
        await asyncio.sleep(0)
        return await super().acquire_entry(*args, **kwargs)


async def test_hits_reserving_at_once_keep_every_hit_they_reserved():
    limiter = Limiter("send", burst=100, window_s=5, storage=RoundTripStorage(), clock=Clock())
    at_once = sum(await asyncio.gather(*(admitted(limiter, "u", 1) for _ in range(150))))
    after = await admitted(limiter, "u", 150)
    assert at_once + after == 100  # the reservations made at once add up instead of replacing each other


class CountingStorage(MemoryStorage):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def acquire_entry(self, *args: Any, **kwargs: Any) -> bool:
        self.calls += 1
        return await super().acquire_entry(*args, **kwargs)


async def test_a_refused_key_is_refused_without_a_round_trip_until_the_window_frees_a_hit():
    clock, storage = Clock(), CountingStorage()
    limiter = Limiter("send", burst=10, window_s=5, storage=storage, clock=clock)
    assert await admitted(limiter, "u", 10) == 10
    with pytest.raises(RateLimited) as first:
        await limiter.hit("u")
    calls = storage.calls
    for _ in range(50):  # hammering past the limit
        with pytest.raises(RateLimited) as again:
            await limiter.hit("u")
        assert 0 < (again.value.retry_after_ms or 0) <= (first.value.retry_after_ms or 0)
    assert storage.calls == calls
    clock.now += 5  # past the time the window gave: asked again
    with pytest.raises(RateLimited):
        await limiter.hit("u")  # (the in-memory storage's own clock has not moved)
    assert storage.calls > calls


# ---- forgetting a key: a login that succeeded clears its username's count --------------------


async def test_a_reset_key_starts_a_fresh_count_in_memory():
    limiter = Limiter("login", burst=2, window_s=300)
    assert await admitted(limiter, "alice", 3) == 2
    await limiter.reset("alice")
    assert await admitted(limiter, "alice", 3) == 2
    await limiter.reset("nobody")  # a key never seen is fine


async def test_a_reset_key_starts_a_fresh_count_on_the_shared_storage():
    clock = Clock()
    a, b = shared_limiters(2, burst=3, clock=clock)
    assert await admitted(a, "alice", 5) == 3  # a now refuses alice without asking the storage
    await a.reset("alice")
    assert await remaining(a, "alice") == 3
    assert await admitted(a, "alice", 5) == 3  # its own memory of the refusal is gone too
    await b.reset("alice")  # any gateway may reset: the count is one
    assert await admitted(b, "alice", 1) == 1
