"""Presence, shared rate limits and the member-list cache against a real redis-server."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from parley import topics
from parley.adapters.redis_state import RedisMemberCache, RedisPresence, connect_redis, rate_limit_storage
from parley.errors import RateLimited, Unavailable
from parley.ratelimit import Limiter
from tests.nats_redis_servers import ServerProcess, redis_server  # noqa: F401

pytestmark = pytest.mark.integration
_ids = itertools.count()


def unique(name: str) -> str:
    """Names of this test only: the server is shared by the whole session."""
    return f"{name}-{time.monotonic_ns()}-{next(_ids)}"


@pytest.fixture
async def connect(redis_server: ServerProcess) -> AsyncIterator[Callable[[], Redis]]:  # noqa: F811
    """A client per simulated process (gateway or delivery worker), each with its own pool."""
    clients: list[Redis] = []

    def make() -> Redis:
        clients.append(connect_redis(redis_server.url))
        return clients[-1]

    yield make
    for client in clients:
        await client.aclose()


async def test_a_user_on_two_gateways_is_located_on_both_until_one_disconnects(connect: Callable[[], Redis]) -> None:
    gateways, delivery = RedisPresence(connect()), RedisPresence(connect())
    gw_a, gw_b, alice, bob, carol = unique("gw-a"), unique("gw-b"), unique("alice"), unique("bob"), unique("carol")
    for gw in (gw_a, gw_b):
        await gateways.heartbeat(gw, ttl_s=30)
    assert await gateways.connected(alice, gw_a)  # her first session anywhere: she came online
    assert not await gateways.connected(alice, gw_b)
    assert await gateways.connected(bob, gw_b)

    assert await delivery.locate([alice, bob, carol]) == {gw_a: [alice], gw_b: [alice, bob]}
    assert not await gateways.disconnected(alice, gw_a)  # still on gw_b
    assert await delivery.locate([alice, bob, carol]) == {gw_b: [alice, bob]}
    assert await gateways.disconnected(alice, gw_b)  # her last: she went offline
    assert await delivery.locate([alice, carol]) == {}


async def test_a_gateway_whose_heartbeat_expired_is_not_located_and_its_entries_go(connect: Callable[[], Redis]) -> None:
    redis = connect()
    presence = RedisPresence(redis)
    dying, living, alice = unique("gw-dying"), unique("gw-living"), unique("alice")
    await presence.heartbeat(dying, ttl_s=0.2)
    await presence.heartbeat(living, ttl_s=30)
    await presence.connected(alice, dying)
    await presence.connected(alice, living)
    assert await presence.locate([alice]) == {dying: [alice], living: [alice]}

    await asyncio.sleep(0.3)
    assert await presence.locate([alice]) == {living: [alice]}
    assert await redis.smembers(topics.PRESENCE_KEY_PREFIX + alice) == {living.encode()}  # cleaned lazily


async def test_heartbeat_tells_a_gateway_when_it_must_rebuild(connect: Callable[[], Redis]) -> None:
    presence, gw = RedisPresence(connect()), unique("gw")
    assert await presence.heartbeat(gw, ttl_s=0.2) is False  # first beat: nothing registered yet
    assert await presence.heartbeat(gw, ttl_s=0.2) is True
    await asyncio.sleep(0.3)
    assert await presence.heartbeat(gw, ttl_s=0.2) is False  # expired: its entries may be gone


async def test_a_gateway_back_after_expiry_is_located_again_once_it_rebuilds(connect: Callable[[], Redis]) -> None:
    delivery, gateway = RedisPresence(connect()), RedisPresence(connect())
    gw, alice = unique("gw"), unique("alice")
    await gateway.heartbeat(gw, ttl_s=0.2)
    await gateway.connected(alice, gw)
    assert await delivery.locate([alice]) == {gw: [alice]}
    await asyncio.sleep(0.3)
    assert await delivery.locate([alice]) == {}  # expired: its entry is removed

    assert await gateway.heartbeat(gw, ttl_s=30) is False
    await gateway.rebuild(gw, [alice])
    assert await delivery.locate([alice]) == {gw: [alice]}
    assert await RedisPresence(connect()).locate([alice]) == {gw: [alice]}  # a worker new to it too


async def test_a_gateway_that_comes_back_during_a_cleanup_keeps_its_entries(
        connect: Callable[[], Redis], monkeypatch: pytest.MonkeyPatch) -> None:
    delivery, gateway = RedisPresence(connect()), RedisPresence(connect())
    gw, alice = unique("gw"), unique("alice")
    await gateway.heartbeat(gw, ttl_s=0.2)
    await gateway.connected(alice, gw)
    await asyncio.sleep(0.3)

    # Between `locate` reading the gateway as dead and removing its entries, it beats again.
    forget = delivery._forget_dead

    async def gateway_beats_first(**kwargs: object) -> object:
        await gateway.heartbeat(gw, ttl_s=30)
        return await forget(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(delivery, "_forget_dead", gateway_beats_first)
    assert await delivery.locate([alice]) == {}  # it was dead when read
    assert await delivery.locate([alice]) == {gw: [alice]}  # and its entry survived the cleanup


async def test_locating_many_users_takes_one_round_trip(connect: Callable[[], Redis], monkeypatch: pytest.MonkeyPatch) -> None:
    redis = connect()
    presence, gateways = RedisPresence(redis), [unique("gw") for _ in range(4)]
    users = [unique("user") for _ in range(2000)]
    for gw in gateways:
        await presence.heartbeat(gw, ttl_s=30)
    await asyncio.gather(*(presence.rebuild(gw, users[i::4]) for i, gw in enumerate(gateways)))
    await presence.locate(users[:4])  # loads the script (a round trip more, once)

    exchanges = 0
    get_connection = redis.connection_pool.get_connection

    async def counting() -> object:
        nonlocal exchanges
        exchanges += 1
        return await get_connection()

    monkeypatch.setattr(redis.connection_pool, "get_connection", counting)
    located = await presence.locate(users)
    assert exchanges == 1
    assert {gw: sorted(us) for gw, us in located.items()} == {gw: sorted(users[i::4]) for i, gw in enumerate(gateways)}


@pytest.mark.slow
async def test_rebuild_after_a_redis_restart_restores_locate_results(
        connect: Callable[[], Redis], redis_server: ServerProcess) -> None:  # noqa: F811
    gateway, delivery = RedisPresence(connect()), RedisPresence(connect())
    gw, users = unique("gw"), [unique("user") for _ in range(3)]
    await gateway.heartbeat(gw, ttl_s=30)
    for user in users:
        await gateway.connected(user, gw)
    assert await delivery.locate(users) == {gw: users}

    redis_server.restart()  # no persistence: everything is lost
    # The pooled connections are dead now; the first command on each must still succeed.
    assert await delivery.locate(users) == {}
    assert await gateway.heartbeat(gw, ttl_s=30) is False
    await gateway.rebuild(gw, users)
    assert await delivery.locate(users) == {gw: users}


@pytest.mark.slow
async def test_a_redis_that_is_down_surfaces_as_unavailable(
        connect: Callable[[], Redis], redis_server: ServerProcess) -> None:  # noqa: F811
    presence, members = RedisPresence(connect()), RedisMemberCache(connect())
    limiter = Limiter(unique("send"), burst=5, window_s=10, storage=rate_limit_storage(redis_server.url, connect()))
    redis_server.stop()
    try:
        started = time.monotonic()
        with pytest.raises(Unavailable):
            await presence.locate([unique("alice")])
        with pytest.raises(Unavailable):
            await presence.heartbeat(unique("gw"), ttl_s=5)
        with pytest.raises(Unavailable):
            await members.get(unique("conv"))
        with pytest.raises(Unavailable):  # not a guess either way: the client retries
            await limiter.hit(unique("alice"))
        assert time.monotonic() - started < 3
    finally:
        redis_server.start()
    assert await presence.locate([unique("alice")]) == {}


async def test_two_limiters_on_the_shared_storage_enforce_one_combined_limit(
        connect: Callable[[], Redis], redis_server: ServerProcess) -> None:  # noqa: F811
    gateway_1, gateway_2 = connect(), connect()
    name, user = unique("send"), unique("alice")
    limiters = [Limiter(name, burst=5, window_s=10, storage=rate_limit_storage(redis_server.url, r))
                for r in (gateway_1, gateway_2)]

    for n in range(5):  # alternating gateways: 3 + 2 hits, one count
        await limiters[n % 2].hit(user)
    for limiter in limiters:
        with pytest.raises(RateLimited) as raised:
            await limiter.hit(user)
        assert 0 < (raised.value.retry_after_ms or 0) <= 10_000
    await limiters[0].hit(unique("bob"))  # counted per key


async def test_gateways_spending_leases_admit_the_limit_and_no_more(
        connect: Callable[[], Redis], redis_server: ServerProcess) -> None:  # noqa: F811
    name, user = unique("send"), unique("alice")
    limiters = [Limiter(name, burst=100, window_s=10, storage=rate_limit_storage(redis_server.url, connect()))
                for _ in range(2)]
    admitted = 0
    for n in range(150):  # 4-hit leases from Redis, spent on alternating gateways
        try:
            await limiters[n % 2].hit(user)
            admitted += 1
        except RateLimited:
            pass
    assert admitted == 100


async def test_a_cached_member_list_is_shared_until_invalidated(connect: Callable[[], Redis]) -> None:
    worker_1, worker_2 = RedisMemberCache(connect()), RedisMemberCache(connect())
    conv = unique("conv")
    assert await worker_1.get(conv) is None
    await worker_1.put(conv, ["alice", "bob"])
    assert await worker_2.get(conv) == ["alice", "bob"]

    await worker_2.invalidate(conv)
    assert await worker_1.get(conv) is None


async def test_a_member_lists_size_is_read_without_the_list_and_invalidated_with_it(
        connect: Callable[[], Redis]) -> None:
    worker_1, worker_2 = RedisMemberCache(connect()), RedisMemberCache(connect())
    conv = unique("conv")
    assert await worker_1.size(conv) is None
    await worker_1.put(conv, [f"u{i}" for i in range(1000)])
    assert await worker_2.size(conv) == 1000
    await worker_2.invalidate(conv)
    assert await worker_1.size(conv) is None
    await worker_1.put(conv, ["stale"])  # held off with the list: a stale size cannot come back either
    assert await worker_2.size(conv) is None


async def test_a_stale_reader_cannot_put_an_invalidated_member_list_back(connect: Callable[[], Redis]) -> None:
    reader, writer = RedisMemberCache(connect(), hold_off_s=0.3), RedisMemberCache(connect(), hold_off_s=0.3)
    conv = unique("conv")
    assert await reader.get(conv) is None
    stale = ["alice", "bob"]  # what the reader got from the store just before...
    await writer.invalidate(conv)  # ...bob left and the writer invalidated
    await reader.put(conv, stale)
    assert await reader.get(conv) is None

    await asyncio.sleep(0.4)  # after the hold-off a fresh read fills the cache again
    await reader.put(conv, ["alice"])
    assert await writer.get(conv) == ["alice"]
