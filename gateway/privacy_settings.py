"""`GET` and `PATCH /v1/me/privacy`: a user's own privacy choices, kept with the account. Today
one: who may add them to a conversation directly (`who_may_add`: anyone, contacts or nobody;
everyone else invites them, chat_core/ops/membership.py)."""

from __future__ import annotations

from typing import Literal

import msgspec
from aiohttp import web

from moderation.admin.routes import bearer_token, decode_body, json_response
from parley.accounts import Authenticator
from parley.errors import NotFound
from parley.ports import AccountStore
from parley.ratelimit import Limiter
from parley.records import AccountPatch


class PrivacyBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    who_may_add: Literal["anyone", "contacts", "nobody"]


class PrivacyRoutes:
    """Changes are limited per user like the other settings (a write is a write)."""

    def __init__(self, accounts: AccountStore, auth: Authenticator, limiter: Limiter) -> None:
        self._accounts = accounts
        self._auth = auth
        self._limiter = limiter

    async def get(self, request: web.Request) -> web.Response:
        who = await self._auth.principal(bearer_token(request))
        return json_response({"who_may_add": who.account.who_may_add})

    async def patch(self, request: web.Request) -> web.Response:
        who = await self._auth.principal(bearer_token(request))
        body = await decode_body(request, PrivacyBody)
        await self._limiter.hit(who.user_id)
        account = await self._accounts.update_account(who.user_id, AccountPatch(who_may_add=body.who_may_add))
        if account is None:
            raise NotFound("no such account")
        return json_response({"who_may_add": account.who_may_add})

    def mount(self, app: web.Application) -> None:
        app.router.add_get("/v1/me/privacy", self.get)
        app.router.add_patch("/v1/me/privacy", self.patch)
