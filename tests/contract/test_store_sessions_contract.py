"""The store contract, SessionStore: login session families, their rotating refresh tokens (kept by
hash, each used once), revocation, and the revocation log the gateways follow. Every adapter must
pass these unchanged (conftest.py)."""

from __future__ import annotations

import time

from parley.records import RefreshToken, Revocation, SessionFamily

HOUR_MS = 3600 * 1000


def now_ms() -> int:
    return int(time.time() * 1000)


def family(family_id: str, user: str = "u1", at: int | None = None) -> SessionFamily:
    # Expiries in the future of the real clock: the Cassandra store turns them into TTLs.
    at = now_ms() if at is None else at
    return SessionFamily(id=family_id, user_id=user, created_at=at, last_used_at=at, expires_at=at + HOUR_MS,
                         label="phone app", token_gen=2)


def token(token_hash: str, fam: SessionFamily) -> RefreshToken:
    return RefreshToken(hash=token_hash, family=fam.id, user_id=fam.user_id, expires_at=fam.expires_at)


async def test_a_family_is_stored_with_its_first_refresh_token_and_listed_by_user(reopen):
    store = await reopen()
    first, second, other = family("f1"), family("f2", at=now_ms() + 5), family("f3", user="u2")
    for fam, token_hash in ((first, "h1"), (second, "h2"), (other, "h3")):
        await store.create_session_family(fam, token(token_hash, fam))
    store = await reopen()  # durable
    assert await store.session_family("u1", "f1") == first
    assert await store.session_family("u2", "f1") is None  # a family is found with its user only
    assert await store.session_family("u1", "nope") is None
    assert await store.session_families("u1") == [first, second]  # oldest first
    assert await store.session_families("nobody") == []
    assert await store.refresh_token("h1") == token("h1", first)
    assert (await store.refresh_token("h3")).user_id == "u2"  # type: ignore[union-attr]
    assert await store.refresh_token("unknown") is None


async def test_session_families_of_many_users_are_each_users_families_in_the_order_asked(reopen):
    store = await reopen()
    first, second, other = family("f1"), family("f2", at=now_ms() + 5), family("f3", user="u2")
    for fam, token_hash in ((second, "h2"), (first, "h1"), (other, "h3")):
        await store.create_session_family(fam, token(token_hash, fam))
    assert await store.session_families_of(["u2", "nobody", "u1", "u2"]) == [[other], [], [first, second], [other]]
    assert await store.session_families_of([]) == []


async def test_a_refresh_token_is_used_once_and_its_successor_moves_the_family_on(reopen):
    store = await reopen()
    fam = family("f1")
    await store.create_session_family(fam, token("h1", fam))
    used = await store.refresh_token("h1")
    assert used is not None and used.used_at is None
    later = fam.created_at + 60_000
    successor = RefreshToken(hash="h2", family="f1", user_id="u1", expires_at=later + HOUR_MS)
    assert await store.rotate_refresh_token(used, successor, later) is True
    store = await reopen()
    assert (await store.refresh_token("h1")).used_at == later  # type: ignore[union-attr]
    assert await store.refresh_token("h2") == successor
    moved = await store.session_family("u1", "f1")
    assert moved is not None and (moved.last_used_at, moved.expires_at) == (later, successor.expires_at)
    assert (moved.created_at, moved.label, moved.token_gen) == (fam.created_at, "phone app", 2)
    # Spent: a second rotation of the same token is refused and moves nothing (the caller then
    # revokes the family, which makes any successor an adapter stored on the way worthless).
    again = RefreshToken(hash="h3", family="f1", user_id="u1", expires_at=later + 2 * HOUR_MS)
    assert await store.rotate_refresh_token(used, again, later + 1) is False
    assert (await store.refresh_token("h1")).used_at == later  # type: ignore[union-attr]
    assert (await store.session_family("u1", "f1")).expires_at == successor.expires_at  # type: ignore[union-attr]


async def test_a_revoked_family_stays_revoked(reopen):
    store = await reopen()
    fam = family("f1")
    await store.create_session_family(fam, token("h1", fam))
    at = fam.created_at + 10
    assert await store.revoke_session_family("u1", "f1", at) is True
    assert await store.revoke_session_family("u1", "f1", at + 1) is False  # already
    assert await store.revoke_session_family("u1", "nope", at) is False
    assert await store.revoke_session_family("u2", "f1", at) is False  # not theirs
    used = await store.refresh_token("h1")
    assert used is not None
    successor = RefreshToken(hash="h2", family="f1", user_id="u1", expires_at=at + HOUR_MS)
    await store.rotate_refresh_token(used, successor, at + 2)  # a refresh racing the revocation
    store = await reopen()
    revoked = await store.session_family("u1", "f1")
    assert revoked is not None and revoked.revoked_at == at
    assert [f.revoked_at for f in await store.session_families("u1")] == [at]


async def test_the_revocation_log_is_read_from_a_point_in_time_oldest_first(reopen):
    store = await reopen()
    now = now_ms()
    entries = [
        Revocation(id="r1", at=now - 5000, user_id="u1", family="f1", reason="signed out"),
        Revocation(id="r2", at=now - 1000, user_id="u2", token_gen=3, reason="account suspended"),
        Revocation(id="r3", at=now, user_id="u1", family="f2", reason="session revoked"),
    ]
    for entry in reversed(entries):
        await store.append_revocation(entry)
    store = await reopen()
    assert await store.revocations_since(now - 2000) == entries[1:]
    assert await store.revocations_since(now - 1000) == entries[1:]  # at or after
    assert await store.revocations_since(now + 1) == []
