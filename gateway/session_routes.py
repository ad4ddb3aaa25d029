"""REST routes of login sessions (parley/session_families.py): refresh, logout, logout everywhere,
the caller's list of sessions with revoke, and password change."""

from __future__ import annotations

import asyncio
from typing import Annotated

import msgspec
from aiohttp import web
from msgspec import Meta

from gateway.rest import ip_limit
from moderation.admin.routes import bearer_token, decode_body, json_response
from parley.accounts import Authenticator
from parley.auth import PASSWORD_MAX, Passwords, check_password_shape
from parley.errors import Forbidden, NotFound
from parley.ports import AccountStore
from parley.ratelimit import Limiter
from parley.records import AccountPatch
from parley.session_families import Logins


class RefreshBody(msgspec.Struct, forbid_unknown_fields=True):
    refresh_token: Annotated[str, Meta(min_length=1, max_length=256)]


class PasswordBody(msgspec.Struct, forbid_unknown_fields=True):
    old_password: Annotated[str, Meta(max_length=PASSWORD_MAX)]
    new_password: Annotated[str, Meta(max_length=PASSWORD_MAX)]


class NoBody(msgspec.Struct, forbid_unknown_fields=True):
    """What a route that takes nothing accepts: no body, or `{}` (anything else is refused,
    so a malformed request changes nothing)."""


class Ended(msgspec.Struct):
    """How many logins a request ended."""

    sessions_revoked: int


class SessionRoutes:
    def __init__(self, logins: Logins, auth: Authenticator, accounts: AccountStore, passwords: Passwords,
                 password_attempts: Limiter, per_ip: Limiter | None) -> None:
        self._logins = logins
        self._auth = auth
        self._accounts = accounts
        self._passwords = passwords
        self._password_attempts = password_attempts
        self._per_ip = per_ip

    async def refresh(self, request: web.Request) -> web.Response:
        await ip_limit(self._per_ip, request)
        body: RefreshBody = await decode_body(request, RefreshBody)
        return json_response(await self._logins.refresh(body.refresh_token))

    async def logout(self, request: web.Request) -> web.Response:
        who = await self._auth.principal(bearer_token(request))
        await decode_body(request, NoBody)
        if who.claims.family is None:  # a guest: the token runs out by itself
            raise Forbidden("a guest's session ends when its token expires")
        ended = await self._logins.end(who.user_id, who.claims.family, "signed out")
        return json_response(Ended(int(ended)))

    async def logout_everywhere(self, request: web.Request) -> web.Response:
        who = await self._auth.principal(bearer_token(request))
        await decode_body(request, NoBody)
        if who.guest:
            raise Forbidden("a guest's session ends when its token expires")
        return json_response(Ended(await self._logins.end_everywhere(who)))

    async def list(self, request: web.Request) -> web.Response:
        who = await self._auth.principal(bearer_token(request))
        return json_response({"sessions": await self._logins.sessions(who)})

    async def revoke(self, request: web.Request) -> web.Response:
        who = await self._auth.principal(bearer_token(request))
        await decode_body(request, NoBody)
        if not await self._logins.end(who.user_id, request.match_info["id"], "session revoked"):
            raise NotFound("no such session")
        return json_response(Ended(1))

    async def change_password(self, request: web.Request) -> web.Response:
        """Limited like login (one count per check of the name's password, right or wrong, and
        refused before the hash once over); every other login of the user ends."""
        who = await self._auth.principal(bearer_token(request))
        body: PasswordBody = await decode_body(request, PasswordBody)
        if who.guest:
            raise Forbidden("guests have no password")
        new = check_password_shape(body.new_password)
        name = who.account.username
        await self._password_attempts.hit(name)
        found = await self._accounts.user_by_name(name)
        if found is None or not await asyncio.to_thread(self._passwords.verify, found[1], body.old_password):
            raise Forbidden("the old password is wrong")
        await self._password_attempts.reset(name)
        hashed = await asyncio.to_thread(self._passwords.hash, new)
        await self._accounts.update_account(who.user_id, AccountPatch(password_hash=hashed))
        return json_response(Ended(await self._logins.end_others(who, "password changed")))

    def mount(self, app: web.Application) -> None:
        app.router.add_post("/v1/auth/refresh", self.refresh)
        app.router.add_post("/v1/auth/logout", self.logout)
        app.router.add_post("/v1/auth/logout/all", self.logout_everywhere)
        app.router.add_get("/v1/me/sessions", self.list)
        app.router.add_delete("/v1/me/sessions/{id}", self.revoke)
        app.router.add_post("/v1/me/password", self.change_password)
