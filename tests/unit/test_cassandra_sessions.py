"""CassandraStore's login sessions on the in-memory model of Cassandra semantics: what the store
contract cannot show, namely that families, refresh tokens and log entries expire with their TTL,
that a refresh writes the family again with a TTL that reaches its new expiry, and that two stores
racing to spend one refresh token cannot both win."""

from __future__ import annotations

import asyncio
import time

from parley.adapters.cassandra.store import CassandraStore
from parley.records import RefreshToken, Revocation, SessionFamily
from tests.cassandra_model import ModelSession

HOUR_MS = 3600 * 1000


def login(now: int) -> tuple[SessionFamily, RefreshToken]:
    family = SessionFamily(id="f1", user_id="u1", created_at=now, last_used_at=now, expires_at=now + HOUR_MS,
                           label="web", token_gen=0)
    return family, RefreshToken(hash="h1", family="f1", user_id="u1", expires_at=now + HOUR_MS)


async def test_families_tokens_and_log_entries_expire_and_a_refresh_extends_its_family():
    session = ModelSession()
    clock = [time.time()]
    session.time = lambda: clock[0]
    store = CassandraStore(session)
    now = int(clock[0] * 1000)
    family, first = login(now)
    await store.create_session_family(family, first)
    await store.append_revocation(Revocation(id="r1", at=now, user_id="u1", family="f1", reason="signed out"))
    successor = RefreshToken(hash="h2", family="f1", user_id="u1", expires_at=now + 3 * HOUR_MS)
    assert await store.rotate_refresh_token(first, successor, now + 1000)
    clock[0] += 2 * 3600  # past the first expiry, before the successor's
    assert await store.refresh_token("h1") is None and await store.refresh_token("h2") == successor
    assert (await store.session_family("u1", "f1")).expires_at == successor.expires_at  # type: ignore[union-attr]
    assert await store.revocations_since(now) == []  # the log keeps an hour
    clock[0] += 2 * 3600
    assert await store.session_family("u1", "f1") is None and await store.session_families("u1") == []
    assert await store.refresh_token("h2") is None


async def test_two_stores_spending_one_refresh_token_at_once_cannot_both_win():
    session = ModelSession(interleave=True)
    one, two = CassandraStore(session), CassandraStore(session)
    now = int(time.time() * 1000)
    family, first = login(now)
    await one.create_session_family(family, first)
    won = await asyncio.gather(*(
        store.rotate_refresh_token(first, RefreshToken(hash=f"next-{n}", family="f1", user_id="u1",
                                                       expires_at=now + HOUR_MS), now + 1)
        for n, store in enumerate((one, two))))
    assert sorted(won) == [False, True]
