"""Who is calling: a verified token, the account it names and the login session family that
issued it, checked on every use of a token (each REST request, each WebSocket hello and `auth`),
so a suspension, a deletion, a revoked role or a revoked login cuts tokens already issued."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from parley.auth import Claims, Tokens
from parley.errors import Forbidden, Unauthorized
from parley.ports import AccountStore, SessionStore
from parley.records import SUSPENDED_FOREVER, Account, SessionFamily


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    #: The instance role the token carries ("admin", "moderator") or None.
    role: str | None
    guest: bool
    account: Account
    #: The token's claims: its expiry and its login session family.
    claims: Claims


def now_ms() -> int:
    return int(time.time() * 1000)


def is_suspended(account: Account, now: int) -> bool:
    return account.suspended_until is not None and account.suspended_until > now


def suspension_message(account: Account) -> str:
    until = account.suspended_until
    when = ("indefinitely" if until is None or until >= SUSPENDED_FOREVER else
            "until " + datetime.fromtimestamp(until / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    reason = f": {account.suspend_reason}" if account.suspend_reason else ""
    return f"account suspended {when}{reason}"


def refuse_login(account: Account, now: int) -> None:
    """Why this account may not have a token (pending, declined, deleted, suspended); pure."""
    if account.status == "pending":
        raise Forbidden("account awaiting a moderator's approval")
    if account.status == "rejected":
        raise Forbidden("registration was declined")
    if account.status != "active":
        raise Unauthorized("wrong username or password")
    if is_suspended(account, now):
        raise Forbidden(suspension_message(account))


def check_account(account: Account | None, gen: int, now: int) -> Account:
    """A token, or a login, of token generation `gen` is good while its account exists, is
    active, is not suspended, and `gen` is the account's current generation. Unauthorized means
    "log in again", Forbidden "you may not"."""
    if account is None or account.status == "deleted":
        raise Unauthorized("no such account")
    if gen < account.token_gen:
        raise Unauthorized("token revoked; log in again")
    refuse_login(account, now)
    return account


def check_token_use(account: Account | None, claims: Claims, now: int) -> Account:
    return check_account(account, claims.gen, now)


def family_alive(family: SessionFamily, account: Account | None, now: int) -> bool:
    """A login session family lasts until it is revoked, its newest refresh token expires, or
    its account is cut (its token generation moved past the family's); pure."""
    return (family.revoked_at is None and family.expires_at > now and account is not None
            and family.token_gen >= account.token_gen)


class Authenticator:
    """Token -> Principal, with the account check and the login session check: two store reads
    per use, made together."""

    def __init__(self, tokens: Tokens, accounts: AccountStore, sessions: SessionStore) -> None:
        self.tokens = tokens
        self._accounts = accounts
        self._sessions = sessions

    async def principal(self, token: str) -> Principal:
        claims = self.tokens.verify(token)
        now = now_ms()
        if claims.family is None:
            if not claims.guest:  # a token from before login sessions: nothing could revoke it
                raise Unauthorized("token without a login session; log in again")
            account = check_token_use(await self._accounts.account(claims.user_id), claims, now)
        else:
            found, family = await asyncio.gather(self._accounts.account(claims.user_id),
                                                 self._sessions.session_family(claims.user_id, claims.family))
            account = check_token_use(found, claims, now)
            if family is None or not family_alive(family, account, now):
                raise Unauthorized("session revoked; log in again")
        return Principal(claims.user_id, claims.instance_role, claims.guest or account.guest, account, claims)
