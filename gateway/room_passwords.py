"""Room passwords, checked and hashed at the gateway: argon2 costs tens of milliseconds of CPU,
and chat_core's single writer must never wait for it (a flood of guesses once stalled every
conversation of a writer).

A `conv.join` password attempt is counted per user and per room before anything is read or
hashed; the gateway then reads the room's stored hash and verifies the password in its own
bounded thread pool. The command carries only the hash it matched (`EdgeFacts.password_hash`),
which the writer compares with the room's current one. `conv.create` and `conv.update` passwords
are hashed here too: the plaintext never enters the command log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import msgspec

from parley import frames as F
from parley.auth import Passwords
from parley.errors import RateLimited
from parley.ports import MessageStore
from parley.ratelimit import Limiter

T = TypeVar("T")


class RoomPasswords:
    def __init__(self, store: MessageStore, passwords: Passwords, per_user: Limiter, per_room: Limiter, *,
                 threads: int, queue_max: int) -> None:
        self._store = store
        self._passwords = passwords
        self._per_user = per_user
        self._per_room = per_room
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="room-password")
        self._queue_max = queue_max
        #: Checks running or waiting for a thread.
        self._waiting = 0

    async def join(self, user: str, req: F.ConvJoin) -> tuple[F.ConvJoin, str | None]:
        """The join without its password, and the stored hash the password matched (None: no
        password given, none needed, or a wrong one; the writer decides which)."""
        if req.password is None:
            return req, None
        await self._per_user.hit(user)
        await self._per_room.hit(req.conv)
        bare = msgspec.structs.replace(req, password=None)
        found = await self._store.membership(req.conv, user)
        if found is None or found[1] is not None or found[0].password_hash is None:
            return bare, None  # no such room, a member already, or no password to check
        stored = found[0].password_hash
        if await self._run(self._passwords.verify, stored, req.password):
            return bare, stored
        return bare, None

    async def hash(self, password: str) -> str:
        """A new room password's hash (conv.create, conv.update)."""
        return await self._run(self._passwords.hash, password)

    async def _run(self, work: Callable[..., T], *args: str) -> T:
        if self._waiting >= self._queue_max:
            raise RateLimited("too many room passwords being checked; retry", retry_after_ms=1000)
        self._waiting += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, work, *args)
        finally:
            self._waiting -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
