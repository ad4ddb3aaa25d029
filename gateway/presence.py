"""This gateway's entries in the shared presence map (scale-out: Redis).

A user is registered on their first session here and unregistered after their last, before
`hello` is answered, so delivery finds a session as soon as its client can expect events. A
heartbeat keeps the gateway alive; whenever Redis lost the entries (restart, an expired
heartbeat) or a registration failed while Redis was away, the gateway registers every user it
holds again. Sessions stay up while Redis is down: only new events for them wait for `sync`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from typing import Protocol

from parley.errors import Unavailable

log = logging.getLogger(__name__)

#: A gateway not heard from for this long is dead to delivery; it beats every third of it.
PRESENCE_TTL_S = 15.0


class SharedPresence(Protocol):
    """`parley.adapters.redis_state.RedisPresence`: this gateway's writes, and `locate`."""

    async def locate(self, users: Sequence[str]) -> dict[str, list[str]]: ...
    async def connected(self, user: str, gateway_id: str) -> bool: ...
    async def disconnected(self, user: str, gateway_id: str) -> bool: ...
    async def heartbeat(self, gateway_id: str, ttl_s: float) -> bool: ...
    async def rebuild(self, gateway_id: str, users: Iterable[str]) -> None: ...


class GatewayPresence:
    def __init__(self, shared: SharedPresence, gateway_id: str, ttl_s: float = PRESENCE_TTL_S) -> None:
        self._shared = shared
        self._gateway_id = gateway_id
        self._ttl_s = ttl_s
        #: Some registration did not reach Redis: the next beat registers everyone again.
        self._stale = False
        self.alive = False

    async def locate(self, users: Sequence[str]) -> dict[str, list[str]]:
        """Which gateways hold sessions of `users` (parley.ports.Presence)."""
        return await self._shared.locate(users)

    async def connected(self, user: str) -> bool:
        """Registers the user's first session here; True if they have none anywhere else."""
        try:
            return await self._shared.connected(user, self._gateway_id)
        except Unavailable:
            self._stale = True
            return True

    async def disconnected(self, user: str) -> bool:
        """After the user's last session here; True if they have none anywhere else."""
        try:
            return await self._shared.disconnected(user, self._gateway_id)
        except Unavailable:
            return True  # a stale entry only sends this gateway events for nobody; the TTL ends it

    async def beat(self, users: Iterable[str]) -> None:
        try:
            kept = await self._shared.heartbeat(self._gateway_id, self._ttl_s)
            if not kept or self._stale:
                self._stale = False
                await self._shared.rebuild(self._gateway_id, users)
            self.alive = True
        except Unavailable:
            if self.alive:
                log.warning("presence: redis unavailable; will register every session again")
            self.alive = False
            self._stale = True

    async def beat_forever(self, users: "UsersHere") -> None:
        while True:
            await self.beat(users.users())
            await asyncio.sleep(self._ttl_s / 3)


class UsersHere(Protocol):
    def users(self) -> Iterable[str]: ...
