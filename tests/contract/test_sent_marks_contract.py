"""The sent-marks contract (push/marks.py): what the push worker relies on to send no duplicate
after a crash. It runs on MemorySentMarks (`parley dev`) and on RedisSentMarks against the real
redis-server the test session starts (tests/nats_redis_servers.py): a mark is seen at once, by
another client too, for its TTL and not after."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator

import pytest

from parley.adapters.redis_state import connect_redis
from parley.topics import PUSH_SENT_PREFIX
from push.marks import MemorySentMarks, RedisSentMarks, SentMarks
from tests.nats_redis_servers import ServerProcess, redis_server  # noqa: F401 (fixture)

#: Redis counts a TTL in whole seconds: the shortest there is, with room for a busy machine.
TTL_S = 2
_ids = itertools.count()

#: Two handles on the same marks: a worker's, and another worker's (after a crash, a batch is
#: consumed again elsewhere; in `parley dev` the one process's marks are both).
Pair = tuple[SentMarks, SentMarks]


def unique(name: str) -> str:
    """Keys of this test only: the Redis server is shared by the whole session."""
    return f"{name}-{time.monotonic_ns()}-{next(_ids)}"


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
async def marks(request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    if request.param == "memory":
        memory = MemorySentMarks(TTL_S)
        yield memory, memory
        return
    server: ServerProcess = request.getfixturevalue("redis_server")
    one, two = connect_redis(server.url), connect_redis(server.url)
    try:
        yield RedisSentMarks(one, TTL_S), RedisSentMarks(two, TTL_S)
    finally:
        await one.aclose()
        await two.aclose()


async def test_a_mark_is_seen_by_every_worker_in_the_order_asked(marks: Pair) -> None:
    worker, other = marks
    a, b, c = unique("d1:c1:5:message:"), unique("d2:c1:5:message:"), unique("d1:c1:5:call:k1")
    assert await worker.sent([a, b, c]) == [False, False, False]
    await worker.mark([a, c])
    assert await worker.sent([a, b, c]) == [True, False, True]
    assert await other.sent([c, b, a]) == [True, False, True]
    assert await worker.sent([]) == []
    await worker.mark([])  # nothing to mark: no error, no round trip needed


async def test_many_marks_in_one_call(marks: Pair) -> None:
    worker, other = marks
    keys = [unique(f"d{i}:c:1:message:") for i in range(1000)]
    await worker.mark(keys[::2])
    assert await other.sent(keys) == [i % 2 == 0 for i in range(1000)]


async def test_a_mark_expires_with_its_ttl(marks: Pair) -> None:
    worker, other = marks
    first, again = unique("d1:c1:5:message:"), unique("d1:c1:6:message:")
    await worker.mark([first, again])
    await asyncio.sleep(TTL_S / 2)
    await worker.mark([again])  # marked again: its TTL starts over
    assert await other.sent([first, again]) == [True, True]
    await asyncio.sleep(TTL_S / 2 + 0.3)
    assert await other.sent([first, again]) == [False, True]
    await asyncio.sleep(TTL_S / 2)
    assert await other.sent([first, again]) == [False, False]


@pytest.mark.integration
async def test_redis_keeps_each_mark_under_the_push_prefix_with_the_ttl(redis_server: ServerProcess) -> None:  # noqa: F811
    client = connect_redis(redis_server.url)
    try:
        key = unique("d1:c1:5:message:")
        await RedisSentMarks(client, TTL_S).mark([key])
        assert 0 < await client.pttl(PUSH_SENT_PREFIX + key) <= TTL_S * 1000
    finally:
        await client.aclose()

