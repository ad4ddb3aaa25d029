"""The Cassandra store's login sessions (0008): session_families by user, refresh_tokens by hash
(spent by LWT), and the revocations log by minute. Everything is written USING TTL, so nothing
needs purging: a family and a token live until their expiry, a log entry for
REVOCATION_LOG_KEEP_S."""

from __future__ import annotations

import time
from collections.abc import Sequence

from parley.adapters.cassandra.database import CassandraDatabase
from parley.adapters.cassandra.session import Row
from parley.limits import REVOCATION_LOG_KEEP_S
from parley.records import RefreshToken, Revocation, SessionFamily

#: The revocation log's partitions: one minute each.
BUCKET_MS = 60_000


def ttl_until(expires_at_ms: int) -> int:
    """Seconds from now until `expires_at_ms`, rounded up; at least 1 (a TTL of 0 means none)."""
    return max(1, -(-(expires_at_ms - int(time.time() * 1000)) // 1000))


def _family(r: Row) -> SessionFamily | None:
    if r[2] is None:  # only a revocation's cell outlived the family: it has expired
        return None
    return SessionFamily(user_id=r[0], id=r[1], created_at=r[2], last_used_at=r[3], expires_at=r[4], label=r[5],
                         token_gen=r[6], revoked_at=r[7])


def _token(r: Row) -> RefreshToken | None:
    if r[1] is None:  # only the spending LWT's cell is left
        return None
    return RefreshToken(hash=r[0], family=r[1], user_id=r[2], expires_at=r[3], used_at=r[4])


class CassandraSessions(CassandraDatabase):
    """Implements parley.ports.SessionStore."""

    async def create_session_family(self, family: SessionFamily, first: RefreshToken) -> None:
        await self._put_family(family)
        await self._put_token(first)

    async def _put_family(self, f: SessionFamily) -> None:
        async with self._limit:
            await self._s.execute("family_put", [f.user_id, f.id, f.created_at, f.last_used_at, f.expires_at,
                                                 f.label, f.token_gen, ttl_until(f.expires_at)])

    async def _put_token(self, t: RefreshToken) -> None:
        # Not applied only when a retry finds its own row: a random 256-bit token is never taken.
        await self._lwt("refresh_put", [t.hash, t.family, t.user_id, t.expires_at, ttl_until(t.expires_at)])

    async def session_family(self, user_id: str, family_id: str) -> SessionFamily | None:
        row = await self._one("family_get", [user_id, family_id])
        return None if row is None else _family(row)

    async def session_families(self, user_id: str) -> list[SessionFamily]:
        found = [f for r in await self._all("families_of", [user_id]) if (f := _family(r)) is not None]
        return sorted(found, key=lambda f: (f.created_at, f.id))

    async def session_families_of(self, user_ids: Sequence[str]) -> list[list[SessionFamily]]:
        return await self._gather(self.session_families(u) for u in user_ids)  # a partition each, concurrently

    async def refresh_token(self, token_hash: str) -> RefreshToken | None:
        row = await self._one("refresh_get", [token_hash])
        return None if row is None else _token(row)

    async def rotate_refresh_token(self, used: RefreshToken, successor: RefreshToken, at: int) -> bool:
        """The successor first, then the LWT that spends `used`: a crash in between leaves an
        orphan that expires, never a spent token without its successor (whose next use would
        read as reuse). The family is then written again with the new expiry and TTL."""
        await self._put_token(successor)
        if not await self._lwt("refresh_spend", [ttl_until(used.expires_at), at, used.hash]):
            return False
        family = await self.session_family(used.user_id, used.family)
        if family is not None:
            family.last_used_at, family.expires_at = at, successor.expires_at
            await self._put_family(family)
        return True

    async def revoke_session_family(self, user_id: str, family_id: str, at: int) -> bool:
        """Read, then written: two revocations at once may both answer True."""
        family = await self.session_family(user_id, family_id)
        if family is None or family.revoked_at is not None:
            return False
        async with self._limit:
            await self._s.execute("family_revoke", [ttl_until(family.expires_at), at, user_id, family_id])
        return True

    async def append_revocation(self, revocation: Revocation) -> None:
        r = revocation
        async with self._limit:
            await self._s.execute("revocation_put", [r.at // BUCKET_MS, r.at, r.id, r.user_id, r.family, r.token_gen,
                                                     r.reason, REVOCATION_LOG_KEEP_S])

    async def revocations_since(self, at: int) -> list[Revocation]:
        """One read per minute from `at` (no further back than the log keeps) to now."""
        now = int(time.time() * 1000)
        first = max(at, now - REVOCATION_LOG_KEEP_S * 1000) // BUCKET_MS
        buckets = range(first, max(first, now // BUCKET_MS) + 1)
        pages = await self._gather(self._all("revocations_in", [b, at]) for b in buckets)
        return [Revocation(at=r[0], id=r[1], user_id=r[2], family=r[3], token_gen=r[4], reason=r[5])
                for page in pages for r in page]
