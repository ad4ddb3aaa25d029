"""Who is calling: a verified token and the account it names, checked on every use of a token
(each REST request, each WebSocket hello), so a suspension, a deletion or a revoked role cuts
tokens already issued."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone

from parley.auth import Claims, Tokens
from parley.errors import Forbidden, Unauthorized
from parley.ports import AccountStore
from parley.records import SUSPENDED_FOREVER, Account


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    #: The instance role the token carries ("admin", "moderator") or None.
    role: str | None
    guest: bool
    account: Account


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


def check_token_use(account: Account | None, claims: Claims, now: int) -> Account:
    """A token is good while its account exists, is active, is not suspended, and the token is of
    the account's current generation. Unauthorized means "log in again", Forbidden "you may not"."""
    if account is None or account.status == "deleted":
        raise Unauthorized("no such account")
    if claims.gen < account.token_gen:
        raise Unauthorized("token revoked; log in again")
    refuse_login(account, now)
    return account


class Authenticator:
    """Token -> Principal, with the account check. One store read per use."""

    def __init__(self, tokens: Tokens, store: AccountStore) -> None:
        self.tokens = tokens
        self._store = store

    async def principal(self, token: str) -> Principal:
        claims = self.tokens.verify(token)
        account = check_token_use(await self._store.account(claims.user_id), claims, now_ms())
        return Principal(claims.user_id, claims.instance_role, claims.guest or account.guest, account)
