"""Calls at the edge: the answers of call.start and call.join, whose grant (the writer's decision)
becomes a LiveKit join here (a token, ICE servers, the caps: calls/join.py), so no token ever
goes through the command log or the outbox; and the same operations through REST for bots, run
by the gateway's command runner like any REST-published write.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import msgspec
from aiohttp import web
from msgspec import Meta

from calls.join import CallJoinResult, JoinMinter
from calls.tokens import Role
from gateway.commands import CommandRunner
from moderation.admin.routes import bearer_token, decode_body, json_response
from parley import events as E
from parley import frames as F
from parley import limits as L
from parley.accounts import Authenticator
from parley.errors import Forbidden
from parley.frames import Media

#: The one refusal of call.start and call.join when no LiveKit is configured.
CALLS_OFF = "calls are off on this server: no LiveKit is configured"

_ok_call = msgspec.json.Decoder(E.CallResult).decode
Device = Annotated[str, Meta(min_length=1, max_length=L.MAX_DEVICE_ID_CHARS)]


class CallJoins:
    """Turns the writer's grant into a join: for WebSocket sessions, the call.start and call.join
    answers in flight by (session, rid), rewritten as they come back from chat_core."""

    def __init__(self, minter: JoinMinter) -> None:
        self.minter = minter
        #: (session id, rid) -> (user, device, display name) of each answer to rewrite.
        self._pending: dict[tuple[str, str], tuple[str, str, str]] = {}

    def expect(self, session: str, rid: str, user: str, device: str, name: str) -> None:
        self._pending[(session, rid)] = (user, device, name)

    def forget(self, session: str, rid: str) -> None:
        self._pending.pop((session, rid), None)

    def answer(self, session: str, rid: str, frame: bytes) -> bytes:
        """`frame` as the client gets it: an ok with a grant becomes one with a join."""
        joiner = self._pending.pop((session, rid), None)
        if joiner is None or not frame.startswith(b'{"op":"ok"'):
            return frame
        return F.encode(self.join(_ok_call(frame), *joiner))

    def join(self, result: E.CallResult, user: str, device: str, name: str) -> CallJoinResult | E.CallResult:
        grant = result.grant
        if grant is None:
            return result
        join = self.minter.join(result.call, user=user, device=device, name=name, role=Role(grant.role),
                                now_s=int(time.time()), max_video_subscriptions=grant.max_video_subscriptions)
        return CallJoinResult(rid=result.rid, call=result.call, join=join)


def calls_on(joins: CallJoins | None) -> CallJoins:
    """The joins, or the refusal of call.start and call.join on a server without LiveKit."""
    if joins is None:
        raise Forbidden(CALLS_OFF, rule="calls_off")
    return joins


class StartBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    media: Media
    #: The bot's device (its LiveKit identity is user:device); "bot" if it has one only.
    device: Device = "bot"


class JoinBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    device: Device = "bot"


class SettingsBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    enabled: bool | msgspec.UnsetType = msgspec.UNSET
    max_participants: Annotated[int, Meta(ge=2, le=L.MAX_CALL_PARTICIPANTS)] | None | msgspec.UnsetType = msgspec.UNSET
    max_video_subscriptions: Annotated[int, Meta(ge=0, le=L.MAX_CALL_VIDEO_SUBSCRIPTIONS)] | None \
        | msgspec.UnsetType = msgspec.UNSET


class CallRoutes:
    """REST for bots: `POST /v1/convs/{conv}/calls` (201 {call, join}), `POST /v1/calls/{call}/join`
    ({call, join}), `.../decline|leave|end` ({call}), `PATCH /v1/convs/{conv}/calls/settings`."""

    def __init__(self, auth: Authenticator, runner: CommandRunner, joins: CallJoins | None) -> None:
        self._auth = auth
        self._runner = runner
        self._joins = joins

    def mount(self, app: web.Application) -> None:
        app.router.add_post("/v1/convs/{conv}/calls", self.start)
        app.router.add_patch("/v1/convs/{conv}/calls/settings", self.settings)
        app.router.add_post("/v1/calls/{call}/join", self.join)
        for op in ("decline", "leave", "end"):
            app.router.add_post(f"/v1/calls/{{call}}/{op}", self._action(f"call.{op}"))

    async def start(self, request: web.Request) -> web.Response:
        who = await self._auth.principal(bearer_token(request))
        joins = calls_on(self._joins)
        body: StartBody = await decode_body(request, StartBody)
        result = await self._run(who.user_id, "call.start", {"conv": request.match_info["conv"], "media": body.media},
                                 who.role, who.guest, body.device)
        return json_response(joins.join(result, who.user_id, body.device, who.account.username), 201)

    async def join(self, request: web.Request) -> web.Response:
        who = await self._auth.principal(bearer_token(request))
        joins = calls_on(self._joins)
        body: JoinBody = await decode_body(request, JoinBody)
        result = await self._run(who.user_id, "call.join", {"call": request.match_info["call"]}, who.role,
                                 who.guest, body.device)
        return json_response(joins.join(result, who.user_id, body.device, who.account.username))

    async def settings(self, request: web.Request) -> web.Response:
        who = await self._auth.principal(bearer_token(request))
        body: SettingsBody = await decode_body(request, SettingsBody)
        fields = {"conv": request.match_info["conv"], **msgspec.to_builtins(body)}
        return json_response(await self._runner.run_op(who.user_id, "call.settings", fields,
                                                       instance_role=who.role, guest=who.guest))

    def _action(self, op: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            who = await self._auth.principal(bearer_token(request))
            return json_response(await self._runner.run_op(who.user_id, op, {"call": request.match_info["call"]},
                                                           instance_role=who.role, guest=who.guest))
        return handler

    async def _run(self, user: str, op: str, fields: dict[str, Any], role: str | None, guest: bool,
                   device: str) -> E.CallResult:
        answer = await self._runner.run_op(user, op, fields, instance_role=role, guest=guest, device=device)
        return msgspec.convert({"op": "ok", "rid": "rest", **answer}, E.CallResult)

    async def ice_servers(self, request: web.Request) -> list[Any] | None:
        """The caller's ICE servers (TURN credentials are per user), for the capabilities of a
        request that names its user; None without calls or a usable token."""
        if self._joins is None or "Authorization" not in request.headers:
            return None
        who = await self._auth.principal(bearer_token(request))
        return list(msgspec.to_builtins(self._joins.minter.ice_servers(who.user_id, int(time.time()))))
