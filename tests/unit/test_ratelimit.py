"""The in-process limit (GCRA): bursts up to `burst`, then `burst / window` per second."""

from __future__ import annotations

import pytest

from parley.errors import RateLimited
from parley.ratelimit import PRUNE_EVERY, Gcra, Limiter


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
