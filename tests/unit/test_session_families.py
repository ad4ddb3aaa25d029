"""Login session families without a server: what a refresh token may do, when a family has ended,
which live sessions a revocation ends, and a gateway's hub closing them (close 4003)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec
import pytest

from gateway.hub import Hub
from gateway.revocations import RevocationFollower
from gateway.session import Session
from parley.accounts import check_account, family_alive
from parley.app.stores import open_store
from parley.auth import Claims, Tokens
from parley.closecodes import CloseCode
from parley.config import Settings
from parley.errors import Forbidden, Unauthorized
from parley.limits import Limits
from parley.ports import GatewayMessage, Revoke
from parley.records import Account, RefreshToken, Revocation, SessionFamily
from parley.session_families import judge_refresh, refresh_token_hash, revocation_ends
from tests.recording_transport import RecordingTransport
from tests.unit.test_session_writes import RecordingSocket

NOW = 1_000_000
TOKENS = Tokens(b"k" * 32, 900)


def family(**fields: object) -> SessionFamily:
    base: dict[str, object] = {"id": "f1", "user_id": "u1", "created_at": 1, "last_used_at": 1,
                               "expires_at": NOW + 1000, "label": "web", "token_gen": 2}
    return SessionFamily(**{**base, **fields})  # type: ignore[arg-type]


def refresh(**fields: object) -> RefreshToken:
    base: dict[str, object] = {"hash": "h1", "family": "f1", "user_id": "u1", "expires_at": NOW + 1000}
    return RefreshToken(**{**base, **fields})  # type: ignore[arg-type]


def account(**fields: object) -> Account:
    return Account(**{"id": "u1", "username": "alice", "created_at": 1, "token_gen": 2, **fields})  # type: ignore[arg-type]


def test_an_access_token_names_its_login_session_family():
    claims = TOKENS.verify(TOKENS.issue("u1", gen=2, family="f1"))
    assert (claims.family, claims.gen, claims.expires_at - int(time.time())) == ("f1", 2, 900)
    assert TOKENS.verify(TOKENS.issue("u2", guest=True, ttl_s=60)).family is None


def test_refresh_tokens_are_random_and_kept_only_as_a_hash():
    digest = refresh_token_hash("some-token")
    assert len(digest) == 64 and "some-token" not in digest
    assert digest == refresh_token_hash("some-token") != refresh_token_hash("other-token")


def test_a_fresh_refresh_token_rotates_and_a_spent_one_is_reuse():
    assert judge_refresh(refresh(), family(), NOW) == family()
    assert judge_refresh(refresh(used_at=NOW - 5), family(), NOW) is None  # reuse: revoke the family


@pytest.mark.parametrize("token, fam, why", [
    (refresh(expires_at=NOW), family(), "expired"),
    (refresh(), family(revoked_at=NOW - 1), "revoked"),
    (refresh(used_at=NOW - 5), family(revoked_at=NOW - 1), "revoked"),  # nothing left to revoke
    (refresh(), None, "revoked"),
])
def test_a_refresh_token_with_nothing_to_rotate_is_unauthorized(token, fam, why):
    with pytest.raises(Unauthorized, match=why):
        judge_refresh(token, fam, NOW)


def test_a_family_ends_when_revoked_expired_or_its_account_was_cut_since_login():
    assert family_alive(family(), account(), NOW)
    assert not family_alive(family(revoked_at=NOW - 1), account(), NOW)
    assert not family_alive(family(expires_at=NOW), account(), NOW)
    assert not family_alive(family(), account(token_gen=3), NOW)  # suspended, deleted, role revoked since
    assert not family_alive(family(), None, NOW)


def claims(family_id: str | None = "f1", gen: int = 2, expires_at: int = 2**40) -> Claims:
    return Claims(user_id="u1", roles=(), expires_at=expires_at, gen=gen, family=family_id)


def test_a_revocation_ends_the_sessions_of_its_family_or_of_older_generations():
    by_family = Revocation(id="r", at=1, user_id="u1", family="f1", reason="signed out")
    assert revocation_ends(by_family, claims("f1")) and not revocation_ends(by_family, claims("f2"))
    assert not revocation_ends(by_family, claims(None))  # a guest has no family
    cut = Revocation(id="r", at=1, user_id="u1", token_gen=3, reason="account suspended")
    assert revocation_ends(cut, claims(gen=2)) and revocation_ends(cut, claims(None, gen=0))
    assert not revocation_ends(cut, claims(gen=3))  # logged in again after the cut


class Live:
    """A session in a hub, with what its socket was told."""

    def __init__(self, hub: Hub, session_id: str, user: str = "u1", **token: object) -> None:
        self.ws, self.transport = RecordingSocket(), RecordingTransport()
        self.session = Session(session_id, user, None, self.ws, self.transport, 100,  # type: ignore[arg-type]
                               claims=claims(**token))  # type: ignore[arg-type]
        hub.add(self.session)


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_the_hub_closes_4003_exactly_the_sessions_a_revocation_on_the_bus_names():
    hub = Hub("gw", Limits())
    phone, laptop = Live(hub, "s1", family_id="f1"), Live(hub, "s2", family_id="f2")
    other = Live(hub, "s3", user="u2", family_id="f1")
    hub.on_message(Revoke(Revocation(id="r", at=1, user_id="u1", family="f1", reason="signed out")))
    await settle()
    assert phone.ws.closed_with == (CloseCode.BAD_TOKEN, b"signed out")
    assert laptop.ws.closed_with is None and other.ws.closed_with is None
    assert hub.revoke(Revocation(id="r2", at=2, user_id="u1", token_gen=3, reason="account suspended")) == 1
    await settle()
    assert laptop.ws.closed_with == (CloseCode.BAD_TOKEN, b"account suspended")
    assert hub.revoke(Revocation(id="r3", at=3, user_id="nobody-here", token_gen=9, reason="x")) == 0


def test_a_revocation_crosses_the_bus_as_a_gateway_message():
    sent = Revoke(Revocation(id="r", at=1, user_id="u1", family="f1", reason="signed out"))
    # What NatsBus writes and every gateway's inbox decodes (parley/adapters/nats_bus.py).
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(sent), type=GatewayMessage) == sent


async def test_the_sweep_ends_a_session_whose_token_expired_with_unauthorized_and_4003():
    hub = Hub("gw", Limits())
    wall = time.time()
    expired, fresh = Live(hub, "s1", expires_at=int(wall) - 1), Live(hub, "s2", expires_at=int(wall) + 60)
    hub.sweep(time.monotonic(), wall)
    await settle()
    assert expired.ws.closed_with is not None and expired.ws.closed_with[0] == CloseCode.BAD_TOKEN
    assert b"expired" in expired.ws.closed_with[1]
    assert [f["code"] for f in expired.transport.frames()] == ["unauthorized"]
    assert fresh.ws.closed_with is None
    fresh.session.claims = claims(expires_at=int(wall) + 120)  # the client sent `auth` with a new token
    hub.sweep(time.monotonic(), wall + 90)
    await settle()
    assert fresh.ws.closed_with is None


async def test_a_gateway_follows_revocations_written_by_a_process_without_a_bus(tmp_path: Path):
    store = await open_store(Settings(data_dir=tmp_path, sqlite_synchronous="NORMAL"))
    try:
        hub = Hub("gw", Limits())
        follower = RevocationFollower(store, hub, every_s=0.05)
        await follower.poll()  # starts from the present
        staff = Live(hub, "s1", gen=0)
        # `parley admin revoke` in another process: the store only.
        await store.append_revocation(Revocation(id="r1", at=int(time.time() * 1000), user_id="u1", token_gen=1,
                                                 reason="role revoked"))
        await follower.poll()
        await settle()
        assert staff.ws.closed_with == (CloseCode.BAD_TOKEN, b"role revoked")
    finally:
        await store.close()


def test_a_login_is_checked_against_its_account_like_a_token():
    gen = family().token_gen
    with pytest.raises(Forbidden, match="suspended"):
        check_account(account(suspended_until=NOW + 10), gen, NOW)
    with pytest.raises(Unauthorized, match="revoked"):
        check_account(account(token_gen=5), gen, NOW)
    assert check_account(account(), gen, NOW).id == "u1"
