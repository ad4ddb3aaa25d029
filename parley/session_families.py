"""Login sessions: what a login is, how long it lasts, and how it ends.

Each login (or registration) starts a session family: short access tokens (JWTs, parley/auth.py,
naming the family as `sid`) and an opaque refresh token, stored only as its SHA-256. A refresh
spends the refresh token for a new pair and moves the family's expiry (an idle login ends when
its newest refresh token expires); a spent refresh token that comes back is a stolen copy, and
revokes its whole family. A family also ends when it is revoked (logout, the user's list of
sessions, a password change for the others) or its account is cut (a suspension, deletion,
revoked role or "log out everywhere" bumps the account's token generation). Guests get one short
token and no family: their session ends with it.

Why this model: Synapse (MSC2918) also rotates refresh tokens, but forgives a spent one until its
successor is used, for clients that lose a response; we follow OAuth's security BCP instead and
treat any reuse as theft, so a stolen token is worth one refresh at most, and a client that lost a
refresh response logs in again. Mattermost and Rocket.Chat keep long-lived opaque session tokens,
checked in the database on every request and extended by activity; a JWT is checked without the
store, so it is kept short, and what the store says (the family, the account) is checked on each
use as well. Every ended session is written to the revocation log (the store), which every
gateway follows, and announced on the bus when the process has one, so live sessions end too.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
import unicodedata
from collections.abc import Awaitable, Callable
from typing import NoReturn, Protocol

import msgspec

from parley.accounts import Principal, check_account, family_alive, now_ms
from parley.auth import Claims, Tokens
from parley.errors import BadRequest, ParleyError, Unauthorized
from parley.ids import new_id
from parley.ports import AccountStore, SessionStore
from parley.records import Account, AccountPatch, RefreshToken, Revocation, SessionFamily

log = logging.getLogger(__name__)

#: A client's name for itself at login (`device_name`), and how much of a User-Agent is kept.
MAX_DEVICE_NAME_CHARS, MAX_USER_AGENT_CHARS = 64, 128
UNKNOWN_CLIENT = "unknown client"


class AccountsAndSessions(AccountStore, SessionStore, Protocol):
    """The two concerns of the store a login touches."""


def new_refresh_token() -> str:
    """256 random bits: guessing one is hopeless, so a fast hash is enough to store it."""
    return secrets.token_urlsafe(32)


def refresh_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def session_label(device_name: object, user_agent: str | None) -> str:
    """What the list of sessions shows for a login: the name the client gave (`device_name`),
    else its User-Agent, cut short and kept printable."""
    if device_name is not None:
        if not isinstance(device_name, str) or not 0 < len(device_name.strip()) <= MAX_DEVICE_NAME_CHARS:
            raise BadRequest(f"device_name must be 1-{MAX_DEVICE_NAME_CHARS} characters")
        raw = device_name
    else:
        raw = (user_agent or "")[:MAX_USER_AGENT_CHARS]
    label = "".join(ch for ch in raw if unicodedata.category(ch)[0] not in "CZ" or ch == " ").strip()
    return label or UNKNOWN_CLIENT


def judge_refresh(token: RefreshToken, family: SessionFamily | None, now: int) -> SessionFamily | None:
    """The family to rotate `token` in; None when `token` was spent already: a copy came back,
    and the family must be revoked. Unauthorized when there is nothing left to rotate (the
    family revoked or gone, the token expired). Pure."""
    if family is None or family.revoked_at is not None:
        raise Unauthorized("session revoked; log in again")
    if token.used_at is not None:
        return None
    if token.expires_at <= now:
        raise Unauthorized("refresh token expired; log in again")
    return family


def revocation_ends(revocation: Revocation, claims: Claims) -> bool:
    """Whether a live session standing on a token with these claims ends; pure."""
    if revocation.family is not None and claims.family == revocation.family:
        return True
    return revocation.token_gen is not None and claims.gen < revocation.token_gen


Announce = Callable[[Revocation], Awaitable[None]]


class Revoker:
    """Ends live sessions: appends the revocation to the store's log, which every gateway
    follows, then announces it on the bus (`announce`) when this process has one, so the
    gateways holding the user act at once instead of at their next read of the log."""

    def __init__(self, log_store: SessionStore, announce: Announce | None = None) -> None:
        self._log = log_store
        self._announce = announce

    async def revoke(self, user_id: str, reason: str, *, family: str | None = None,
                     token_gen: int | None = None) -> None:
        revocation = Revocation(id=new_id("r"), at=now_ms(), user_id=user_id, family=family, token_gen=token_gen,
                                reason=reason)
        await self._log.append_revocation(revocation)
        if self._announce is not None:
            try:
                await self._announce(revocation)
            except ParleyError as err:  # the bus or presence is away: the log still gets there
                log.warning("revocation of %s's sessions not announced (%s); gateways read it from the log",
                            user_id, err.message)

    async def cut_account(self, accounts: AccountStore, user_id: str, patch: AccountPatch,
                          reason: str) -> Account | None:
        """Apply `patch` and bump the account's token generation: every token, login and live
        session of the account ends. None if there is no such account."""
        account = await accounts.update_account(user_id, msgspec.structs.replace(patch, cut_sessions=True))
        if account is not None:
            await self.revoke(user_id, reason, token_gen=account.token_gen)
        return account


class TokenPair(msgspec.Struct, kw_only=True):
    """What a login or a refresh answers (expiries in unix seconds, as JWTs count them)."""

    user_id: str
    token: str
    expires_at: int
    refresh_token: str
    refresh_expires_at: int


class SessionView(msgspec.Struct, kw_only=True):
    """A login as the user's list of their sessions shows it (times in ms since the epoch)."""

    id: str
    label: str
    created_at: int
    last_used_at: int
    expires_at: int
    #: The login whose token asked.
    current: bool


class Logins:
    """Login session families over the store: start one, refresh it, list and end them."""

    def __init__(self, store: AccountsAndSessions, tokens: Tokens, refresh_ttl_s: int, revoker: Revoker) -> None:
        self._store = store
        self._tokens = tokens
        self._refresh_ttl_ms = refresh_ttl_s * 1000
        self._revoker = revoker

    async def start(self, account: Account, label: str) -> TokenPair:
        now = now_ms()
        family = SessionFamily(id=new_id("f"), user_id=account.id, created_at=now, last_used_at=now,
                               expires_at=now + self._refresh_ttl_ms, label=label, token_gen=account.token_gen)
        raw = new_refresh_token()
        await self._store.create_session_family(family, RefreshToken(
            hash=refresh_token_hash(raw), family=family.id, user_id=account.id, expires_at=family.expires_at))
        return self._pair(account, family.id, raw, family.expires_at)

    async def refresh(self, raw: str) -> TokenPair:
        now = now_ms()
        token = await self._store.refresh_token(refresh_token_hash(raw))
        if token is None:
            raise Unauthorized("unknown refresh token; log in again")
        family = judge_refresh(token, await self._store.session_family(token.user_id, token.family), now)
        if family is None:
            await self._reused(token)
        # The account may have been cut (suspended, deleted, a role revoked) since the login.
        account = check_account(await self._store.account(token.user_id), family.token_gen, now)
        successor_raw = new_refresh_token()
        successor = RefreshToken(hash=refresh_token_hash(successor_raw), family=family.id, user_id=account.id,
                                 expires_at=now + self._refresh_ttl_ms)
        if not await self._store.rotate_refresh_token(token, successor, now):
            await self._reused(token)  # spent by someone else meanwhile: the same theft, a moment later
        return self._pair(account, family.id, successor_raw, successor.expires_at)

    async def _reused(self, token: RefreshToken) -> NoReturn:
        await self.end(token.user_id, token.family, "refresh token reused")
        raise Unauthorized("refresh token reused: the session is revoked; log in again")

    def _pair(self, account: Account, family: str, refresh_token: str, refresh_expires_at: int) -> TokenPair:
        roles = (account.role,) if account.role else ()
        now = int(time.time())
        token = self._tokens.issue(account.id, roles, gen=account.token_gen, family=family, now=now)
        return TokenPair(user_id=account.id, token=token, expires_at=now + self._tokens.ttl_s,
                         refresh_token=refresh_token, refresh_expires_at=refresh_expires_at // 1000)

    async def sessions(self, who: Principal) -> list[SessionView]:
        """The caller's live logins, most recently used first."""
        now = now_ms()
        live = [f for f in await self._store.session_families(who.user_id) if family_alive(f, who.account, now)]
        return [SessionView(id=f.id, label=f.label, created_at=f.created_at, last_used_at=f.last_used_at,
                            expires_at=f.expires_at, current=f.id == who.claims.family)
                for f in sorted(live, key=lambda f: f.last_used_at, reverse=True)]

    async def end(self, user_id: str, family_id: str, reason: str) -> bool:
        """Revoke one login and close its live sessions; False if there was none to revoke."""
        if not await self._store.revoke_session_family(user_id, family_id, now_ms()):
            return False
        await self._revoker.revoke(user_id, reason, family=family_id)
        return True

    async def end_others(self, who: Principal, reason: str) -> int:
        """Revoke every live login of the caller but the one whose token asked."""
        now = now_ms()
        ended = 0
        for family in await self._store.session_families(who.user_id):
            if family.id != who.claims.family and family_alive(family, who.account, now):
                ended += await self.end(who.user_id, family.id, reason)
        return ended

    async def end_everywhere(self, who: Principal) -> int:
        """Every login of the caller ends (its account's token generation moves on): how many
        were live."""
        now = now_ms()
        live = sum(family_alive(f, who.account, now) for f in await self._store.session_families(who.user_id))
        await self._revoker.cut_account(self._store, who.user_id, AccountPatch(), "signed out everywhere")
        return live
