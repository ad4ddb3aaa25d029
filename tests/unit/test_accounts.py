"""Token claims and account checks: pure, no server."""

from __future__ import annotations

import pytest

from gateway.hub import REST_SESSION, Hub
from parley.accounts import check_token_use, refuse_login, suspension_message
from parley.auth import Tokens, instance_role
from parley.errors import Forbidden, Unauthorized
from parley.events import Ok, SendResult
from parley.frames import encode
from parley.limits import Limits
from parley.ports import Reply
from parley.records import SUSPENDED_FOREVER, Account

TOKENS = Tokens(b"k" * 32, 3600)


def account(**fields: object) -> Account:
    return Account(id="u1", username="alice", created_at=1, **fields)  # type: ignore[arg-type]


def test_a_token_carries_the_role_guest_flag_and_generation():
    claims = TOKENS.verify(TOKENS.issue("u1", ("moderator",), gen=3))
    assert (claims.instance_role, claims.guest, claims.gen) == ("moderator", False, 3)
    guest = TOKENS.verify(TOKENS.issue("u2", guest=True, ttl_s=60))
    assert (guest.instance_role, guest.guest, guest.gen) == (None, True, 0)
    assert instance_role(["member", "moderator", "admin"]) == "admin"
    assert instance_role(["owner"]) is None


def test_an_account_refuses_tokens_of_an_older_generation_and_suspended_or_pending_users():
    fresh = TOKENS.verify(TOKENS.issue("u1", gen=2))
    assert check_token_use(account(token_gen=2), fresh, now=10).id == "u1"
    with pytest.raises(Unauthorized, match="revoked"):
        check_token_use(account(token_gen=3), fresh, now=10)
    with pytest.raises(Unauthorized):
        check_token_use(None, fresh, now=10)
    with pytest.raises(Unauthorized):
        check_token_use(account(status="deleted", token_gen=2), fresh, now=10)
    with pytest.raises(Forbidden, match="approval"):
        check_token_use(account(status="pending", token_gen=2), fresh, now=10)
    with pytest.raises(Forbidden, match="suspended until 1970-01-01T00:00:20Z: spam"):
        check_token_use(account(token_gen=2, suspended_until=20_000, suspend_reason="spam"), fresh, now=10)
    assert check_token_use(account(token_gen=2, suspended_until=20_000), fresh, now=20_000)  # it ran out
    refuse_login(account(), now=1)
    assert suspension_message(account(suspended_until=SUSPENDED_FOREVER)) == "account suspended indefinitely"


async def test_a_rest_command_reply_reaches_its_waiter_and_a_late_one_is_answered_unavailable():
    hub = Hub("gw", Limits(command_timeout_s=0.0))
    waiting = hub.expect_reply("r1")
    reply = encode(SendResult(rid="r1", conv="c1", seq=4, ts=1))
    hub.on_message(Reply(REST_SESSION, "r1", reply))
    assert await waiting == reply
    late = hub.expect_reply("r2")
    hub.sweep(now=10**9)
    assert b'"unavailable"' in await late
    hub.on_message(Reply(REST_SESSION, "r2", encode(Ok(rid="r2"))))  # too late: dropped, no error
