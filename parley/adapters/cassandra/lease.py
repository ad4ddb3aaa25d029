"""The schema lock of `parley migrate`: a lease in `schema_lock` taken by a lightweight
transaction, so two runners (the Job and an operator by hand) do not apply migrations at once
(the keyspace and the runner's own tables are created, IF NOT EXISTS, before it can be taken).
The row carries a TTL, so a runner that dies frees it; the holder renews it while it runs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from parley.adapters.cassandra.migration_errors import Holder, LeaseLost, SchemaLocked
from parley.adapters.cassandra.session import CqlSession
from parley.errors import Unavailable

log = logging.getLogger(__name__)

#: The one lock `parley migrate` takes (the table could hold others).
LOCK_NAME = "migrate"
#: A run renews every third of this, so it survives two missed renewals; a runner that dies
#: blocks the next one for at most this long. A DDL statement may take a minute (its timeout
#: plus schema agreement) but runs in a thread: renewals go on meanwhile.
LEASE_TTL_S = 60
#: How long a second runner waits for the lock before it fails (SchemaLocked): a whole run of
#: the packaged migrations, with room to spare.
LOCK_WAIT_S = 300.0
LOCK_POLL_S = 2.0


def default_owner() -> str:
    """Readable in the message a waiting runner prints: the host (a pod's name), pid, and a
    random part so two runners never share an owner."""
    return f"{socket.gethostname()}/pid {os.getpid()}/{secrets.token_hex(3)}"


@dataclass(frozen=True)
class LeaseSettings:
    owner: str = field(default_factory=default_owner)
    ttl_s: int = LEASE_TTL_S
    wait_s: float = LOCK_WAIT_S
    poll_s: float = LOCK_POLL_S

    @property
    def renew_every_s(self) -> float:
        return self.ttl_s / 3


class SchemaLease:
    """One runner's hold on the lock. `check()` raises LeaseLost once the lease may have lapsed
    (a renewal was refused, or none succeeded for two intervals): the runner then stops before
    its next statement rather than change the schema beside another runner."""

    def __init__(self, session: CqlSession, settings: LeaseSettings,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._session = session
        self.settings = settings
        self._clock = clock
        self._since_ms = 0
        self._valid_until = 0.0
        self._lost: str | None = None

    async def holder(self) -> Holder | None:
        rows = (await self._session.execute("migration_lock_holder", [LOCK_NAME])).rows
        return Holder(rows[0][0], rows[0][1]) if rows else None

    async def try_acquire(self) -> bool:
        started, since_ms = self._clock(), int(time.time() * 1000)
        page = await self._session.execute("migration_lock_take",
                                           [LOCK_NAME, self.settings.owner, since_ms, self.settings.ttl_s])
        if not page.rows[0][0]:
            return False
        self._since_ms, self._valid_until, self._lost = since_ms, started + self.settings.ttl_s, None
        return True

    async def acquire(self, say: Callable[[str], None] = lambda _: None) -> None:
        """Take the lock, waiting up to `settings.wait_s` for its holder; SchemaLocked after that."""
        started = self._clock()
        waiting_for: Holder | None = None
        while not await self.try_acquire():
            holder = await self.holder()
            waited = self._clock() - started
            if waited >= self.settings.wait_s:
                raise SchemaLocked(holder, round(waited, 1), self.settings.ttl_s)
            if holder is not None and holder != waiting_for:
                say(f"waiting for the schema lock, held by {holder.describe()}")
                waiting_for = holder
            await asyncio.sleep(min(self.settings.poll_s, self.settings.wait_s - waited))

    async def renew(self) -> bool:
        started = self._clock()
        page = await self._session.execute("migration_lock_renew", [
            self.settings.ttl_s, self.settings.owner, self._since_ms, LOCK_NAME, self.settings.owner])
        if page.rows[0][0]:
            self._valid_until = started + self.settings.ttl_s
            return True
        self._lost = "the lock was taken over (its lease had lapsed)"
        return False

    async def keep(self) -> None:
        """Renew until cancelled or refused; a renewal that fails to reach Cassandra is retried
        at the next interval (check() notices if none succeeds in time)."""
        while True:
            await asyncio.sleep(self.settings.renew_every_s)
            try:
                if not await self.renew():
                    return
            except Unavailable as exc:
                log.warning("schema lock not renewed, retrying: %s", exc.message)

    def check(self) -> None:
        if self._lost is None and self._clock() > self._valid_until - self.settings.renew_every_s:
            self._lost = "no renewal reached Cassandra in time"
        if self._lost is not None:
            raise LeaseLost(f"lost the schema lock ({self._lost}); stopped before the next statement: "
                            "run `parley migrate` again (every migration statement is idempotent)")

    async def release(self) -> None:
        """Only our own row: a lease that lapsed and was taken by another runner stays theirs."""
        await self._session.execute("migration_lock_release", [LOCK_NAME, self.settings.owner])


@asynccontextmanager
async def schema_lock(session: CqlSession, settings: LeaseSettings,
                      say: Callable[[str], None] = lambda _: None) -> AsyncIterator[SchemaLease]:
    """Hold the lock for the body, renewing it meanwhile; released on the way out whatever
    happens (if Cassandra is away then, its TTL frees it)."""
    lease = SchemaLease(session, settings)
    await lease.acquire(say)
    renewer = asyncio.create_task(lease.keep())
    try:
        yield lease
    finally:
        renewer.cancel()
        await asyncio.gather(renewer, return_exceptions=True)
        try:
            await lease.release()
        except Unavailable as exc:
            log.warning("schema lock not released (it expires within %d s): %s", settings.ttl_s, exc.message)
