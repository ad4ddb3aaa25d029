"""The scale-out shared state on Redis (redis-py asyncio): presence, rate-limit counts and
member lists, seen alike by every gateway and delivery worker.

One client (one bounded connection pool) per process serves all three. A Redis that is down
or too slow surfaces as `Unavailable` within about two `timeout_s` (one retry on a fresh
connection, which also absorbs the stale pooled connections left by a Redis restart).
Targets one Redis (standalone or Sentinel): the Lua scripts touch keys of several slots.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import msgspec
from limits.aio.storage import RedisStorage
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from parley import topics
from parley.errors import Unavailable

RETRY_AFTER_MS = 1000


def connect_redis(url: str, *, max_connections: int = 64, timeout_s: float = 1.0) -> Redis:
    """A client on a pool that waits up to `timeout_s` for a free connection when all
    `max_connections` are busy (the default pool raises instead, past 100 connections)."""
    pool = BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=timeout_s,
        socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
        # One immediate retry: after a Redis restart every pooled connection is dead, and the
        # first command on each must not fail for it. More would only delay `Unavailable`.
        retry=Retry(NoBackoff(), 1),
    )
    return Redis.from_pool(pool)  # the client owns the pool: `aclose()` closes both


@contextmanager
def _unavailable() -> Iterator[None]:
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError) as err:
        raise Unavailable("shared state (redis) is unavailable; retry", retry_after_ms=RETRY_AFTER_MS) from err


def _presence_key(user: str) -> str:
    return topics.PRESENCE_KEY_PREFIX + user


def _alive_key(gateway_id: str) -> str:
    return topics.GATEWAY_ALIVE_PREFIX + gateway_id


# KEYS[1]: a gateway's heartbeat key; KEYS[2..]: presence sets naming that gateway; ARGV[1]: its
# id. The heartbeat is checked inside the script, so a gateway that came back between `locate`
# reading it dead and this cleanup keeps the entries it has just re-registered.
_FORGET_DEAD_GATEWAY = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
for i = 2, #KEYS do redis.call('SREM', KEYS[i], ARGV[1]) end
return #KEYS - 1
"""


# KEYS: users' presence sets; ARGV[1]: the heartbeat key prefix. Returns each set's gateway ids,
# and those of the gateways named whose heartbeat key exists (read once per gateway; undeclared
# keys, as the module says: one Redis, not a cluster).
_LOCATE = """
local sets, alive, live = {}, {}, {}
for i, key in ipairs(KEYS) do
  local gateways = redis.call('SMEMBERS', key)
  sets[i] = gateways
  for _, gateway in ipairs(gateways) do
    if alive[gateway] == nil then
      alive[gateway] = redis.call('EXISTS', ARGV[1] .. gateway) == 1
      if alive[gateway] then live[#live + 1] = gateway end
    end
  end
end
return {sets, live}
"""


class RedisPresence:
    """`Presence` shared by all gateways: a set of gateway ids per user, and a heartbeat key
    with a TTL per gateway. Entries naming a gateway whose heartbeat expired are not returned
    by `locate`, and are removed when `locate` meets them.

    A gateway beats before it registers anyone, then every few seconds, well within the TTL,
    and calls `rebuild` whenever `heartbeat` returns False. It counts its sessions per user
    itself and calls `connected` on a user's first session and `disconnected` after the last."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._forget_dead = redis.register_script(_FORGET_DEAD_GATEWAY)
        self._locate = redis.register_script(_LOCATE)

    async def connected(self, user: str, gateway_id: str) -> bool:
        """True if no other gateway holds a session of the user: they just came online."""
        return await self._change(self._redis.pipeline(transaction=True).sadd(_presence_key(user), gateway_id), user) == 1

    async def disconnected(self, user: str, gateway_id: str) -> bool:
        """True if no other gateway holds a session of the user: they just went offline."""
        return await self._change(self._redis.pipeline(transaction=True).srem(_presence_key(user), gateway_id), user) == 0

    async def _change(self, pipe: Any, user: str) -> int:
        with _unavailable():
            _, count = await pipe.scard(_presence_key(user)).execute()  # MULTI: no change in between
        return int(count)

    async def heartbeat(self, gateway_id: str, ttl_s: float) -> bool:
        """Keeps the gateway alive for `ttl_s`. False if it was not alive until now (its first
        beat, a heartbeat that expired, or a Redis that lost its data): the caller must then
        `rebuild`, since its entries may be gone."""
        with _unavailable():
            previous = await self._redis.set(_alive_key(gateway_id), b"1", px=max(1, round(ttl_s * 1000)), get=True)
        return previous is not None

    async def rebuild(self, gateway_id: str, users: Iterable[str]) -> None:
        """Registers again every user the gateway holds a session of."""
        pipe = self._redis.pipeline(transaction=False)
        for user in users:
            pipe.sadd(_presence_key(user), gateway_id)
        with _unavailable():
            await pipe.execute()

    async def locate(self, users: Sequence[str]) -> dict[str, list[str]]:
        if not users:
            return {}
        # One script call: a pipeline of one SMEMBERS per user cost redis-py ~25 µs of Python
        # per command (measured: a third of a delivery worker's CPU); the script's single
        # nested reply is parsed in C by hiredis.
        with _unavailable():
            sets, live = await self._locate(keys=[_presence_key(u) for u in users], args=[topics.GATEWAY_ALIVE_PREFIX])
        alive = {raw.decode() for raw in live}
        located: dict[str, list[str]] = {}
        dead: dict[str, list[str]] = {}
        for user, gateways in zip(users, sets):
            for raw in gateways:
                gateway = raw.decode()
                (located if gateway in alive else dead).setdefault(gateway, []).append(user)
        for gateway, stale in dead.items():
            with _unavailable():
                await self._forget_dead(keys=[_alive_key(gateway), *map(_presence_key, stale)], args=[gateway])
        return located


def rate_limit_storage(url: str, redis: Redis) -> RedisStorage:
    """Storage for `parley.ratelimit.Limiter` on the process's pool, so all gateways share one
    count per key. `url` is the one `redis` connects to (`limits` reads its scheme).

    When Redis is down, `Limiter.hit` raises `limits.errors.StorageError`."""
    # `connection_pool` is a documented option that the storage's signature does not type.
    options: dict[str, Any] = {"connection_pool": redis.connection_pool}
    return RedisStorage("async+" + url, implementation="redispy", key_prefix=topics.RATE_LIMIT_PREFIX,
                        wrap_exceptions=True, **options)


_TOMBSTONE = b""  # never a list's encoding (msgpack's empty list is b"\x90")


class RedisMemberCache:
    """Member lists by conversation, shared by the delivery workers; `invalidate` when
    membership changes. Entries expire after `ttl_s` as a safety net.

    Each list's length is kept beside it, written and invalidated with it, so that a reader
    needing only the size (a gateway checking whether a conversation is large, at every login)
    does not fetch a list that may hold 100,000 ids.

    `invalidate` leaves a tombstone for `hold_off_s` that `put` cannot overwrite: a worker that
    read the store just before the change cannot put the old list back after it."""

    def __init__(self, redis: Redis, *, ttl_s: float = 300.0, hold_off_s: float = 2.0) -> None:
        self._redis = redis
        self._ttl_ms = round(ttl_s * 1000)
        self._hold_off_ms = round(hold_off_s * 1000)
        self._encode = msgspec.msgpack.Encoder().encode
        self._decode = msgspec.msgpack.Decoder(list[str]).decode

    async def get(self, conv: str) -> list[str] | None:
        with _unavailable():
            raw = await self._redis.get(topics.MEMBERS_KEY_PREFIX + conv)
        # Always bytes or None: the pool does not decode responses.
        return self._decode(raw) if isinstance(raw, bytes) and raw != _TOMBSTONE else None

    async def size(self, conv: str) -> int | None:
        with _unavailable():
            raw = await self._redis.get(topics.MEMBER_COUNT_KEY_PREFIX + conv)
        return int(raw) if isinstance(raw, bytes) and raw != _TOMBSTONE else None

    async def put(self, conv: str, members: Sequence[str]) -> None:
        with _unavailable():
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.set(topics.MEMBERS_KEY_PREFIX + conv, self._encode(members), px=self._ttl_ms, nx=True)
                pipe.set(topics.MEMBER_COUNT_KEY_PREFIX + conv, len(members), px=self._ttl_ms, nx=True)
                await pipe.execute()

    async def invalidate(self, conv: str) -> None:
        with _unavailable():
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.set(topics.MEMBERS_KEY_PREFIX + conv, _TOMBSTONE, px=self._hold_off_ms)
                pipe.set(topics.MEMBER_COUNT_KEY_PREFIX + conv, _TOMBSTONE, px=self._hold_off_ms)
                await pipe.execute()
