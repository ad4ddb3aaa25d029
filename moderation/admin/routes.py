"""The admin API's route table, and the one wrapper every route goes through.

Each `Route` declares its method, path, body, query and response types and the least instance
role it needs. `register` wraps every entry in the same gate (token -> account check -> role),
so no route can be added without it, and `moderation.admin.openapi` documents the same table.
Routes are thin: decode, call one AdminService function, encode.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import web

from moderation.admin import bodies as B
from moderation.admin.service import AdminService
from moderation.instance_policy import InstancePolicy, PolicyPatch
from parley.accounts import Authenticator, Principal
from parley.auth import INSTANCE_RANK
from parley.errors import BadRequest, Forbidden, Invalid, NotFound, Unauthorized
from parley.records import Account, Report

PREFIX = "/v1/admin"


@dataclass(frozen=True, slots=True)
class Call:
    """One decoded request: path parameters (ints already parsed), body and query Structs."""

    who: Principal
    path: dict[str, Any]
    body: Any = None
    query: Any = None


Action = Callable[[AdminService, Call], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str  # below PREFIX; `{name}` params, `{name:int}` for integers
    summary: str
    call: Action
    response: type
    tag: str
    body: type | None = None
    query: type | None = None
    status: int = 200
    #: The least instance role allowed: "moderator" or "admin".
    min_role: str = "moderator"
    #: The protocol write this route publishes (chat_core decides and audits it).
    op: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def full_path(self) -> str:
        return PREFIX + self.path.replace(":int}", "}")

    @property
    def int_params(self) -> tuple[str, ...]:
        return tuple(re.findall(r"\{(\w+):int\}", self.path))


def _member_op(op: str, summary: str) -> Route:
    """A conversation moderation op of chat_core: one line per op (body fields pass through)."""
    body = B.RoleBody if op == "member.role" else B.MemberActionBody
    return Route("POST", f"/convs/{{conv}}/{op.removeprefix('member.')}", summary,
                 lambda s, c: s.member_action(c.who, op, c.path["conv"], c.body), B.ActionResult, "conversations",
                 body=body, op=op)


ROUTES: tuple[Route, ...] = (
    # users
    Route("GET", "/users", "Search users by username prefix or id, status, role (the read is audited)",
          lambda s, c: s.search_users(c.who, c.query), B.UsersPage, "users", query=B.UsersQuery),
    Route("GET", "/users/{user_id}", "One user's account (the read is audited)",
          lambda s, c: s.user(c.who, c.path["user_id"]), Account, "users"),
    Route("POST", "/users/{user_id}/suspend", "Suspend a user (cuts their sessions and tokens)",
          lambda s, c: s.suspend(c.who, c.path["user_id"], c.body), Account, "users", body=B.SuspendBody),
    Route("POST", "/users/{user_id}/unsuspend", "Lift a suspension",
          lambda s, c: s.unsuspend(c.who, c.path["user_id"], c.body), Account, "users", body=B.ReasonBody),
    Route("POST", "/users/{user_id}/approve", "Approve a pending registration",
          lambda s, c: s.approve(c.who, c.path["user_id"], c.body), Account, "users", body=B.ReasonBody),
    Route("POST", "/users/{user_id}/reject", "Decline a pending registration",
          lambda s, c: s.reject(c.who, c.path["user_id"], c.body), Account, "users", body=B.ReasonBody),
    # conversations
    Route("GET", "/convs/{conv}", "A conversation and its members (the read is audited)",
          lambda s, c: s.inspect(c.who, c.path["conv"]), B.ConvInspection, "conversations"),
    _member_op("member.mute", "Mute a member (chat_core `member.mute`)"),
    _member_op("member.kick", "Remove a member (chat_core `member.kick`)"),
    _member_op("member.ban", "Ban a user from the conversation (chat_core `member.ban`)"),
    _member_op("member.unban", "Lift a ban (chat_core `member.unban`)"),
    _member_op("member.role", "Change a member's role (chat_core `member.role`)"),
    Route("POST", "/convs/{conv}/messages/{seq:int}/delete", "Delete a message as a moderator, with a reason",
          lambda s, c: s.delete_message(c.who, c.path["conv"], c.path["seq"], c.body.reason), B.ActionResult,
          "conversations", body=B.DeleteMessageBody, op="delete"),
    # reports
    Route("GET", "/reports", "The report queue, newest first (the read is audited)",
          lambda s, c: s.reports(c.who, c.query), B.ReportsPage, "reports", query=B.ReportsQuery),
    Route("GET", "/reports/{report_id:int}", "One report (the read is audited)",
          lambda s, c: s.report(c.who, c.path["report_id"]), Report, "reports"),
    Route("POST", "/reports/{report_id:int}/claim", "Claim a report (409 if another moderator holds it)",
          lambda s, c: s.claim(c.who, c.path["report_id"]), Report, "reports"),
    Route("POST", "/reports/{report_id:int}/resolve", "Resolve a report with an action",
          lambda s, c: s.resolve(c.who, c.path["report_id"], c.body), Report, "reports", body=B.ResolveBody),
    # instance policy, invites
    Route("GET", "/policies", "The instance policy",
          lambda s, c: s.policy(), InstancePolicy, "instance"),
    Route("PATCH", "/policies", "Change the instance policy (admins only)",
          lambda s, c: s.update_policy(c.who, c.body), InstancePolicy, "instance", body=PolicyPatch,
          min_role="admin"),
    Route("GET", "/invites", "Invite codes, newest first",
          lambda s, c: s.invites(c.query), B.InvitesPage, "instance", query=B.InvitesQuery),
    Route("POST", "/invites", "Create single-use invite codes",
          lambda s, c: s.create_invites(c.who, c.body), B.InvitesPage, "instance", body=B.InviteBody, status=201),
    # audit: read only; no route edits or deletes an entry
    Route("GET", "/audit", "The audit log, newest first, filtered",
          lambda s, c: s.audit_log(c.query), B.AuditPage, "audit", query=B.AuditQueryParams),
)


# ---- the gate and the codec ---------------------------------------------------------------


def bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("an `Authorization: Bearer <token>` header is required")
    return token.strip()


def require_role(who: Principal, min_role: str) -> None:
    if INSTANCE_RANK.get(who.role or "", 0) < INSTANCE_RANK[min_role]:
        have = f"you are {who.role}" if who.role else "you have no instance role"
        raise Forbidden(f"this needs the instance {min_role} role or higher; {have}")


_FIELD_AT = re.compile(r"^(.*?)(?: - at `\$(.*)`)?$", re.S)
_MISSING = re.compile(r"missing required field `([^`]+)`")


def invalid(exc: msgspec.ValidationError, where: str) -> Invalid:
    """422 naming the failing field: msgspec says `... - at `$.field`` (or names a missing one)."""
    message, path = _FIELD_AT.match(str(exc)).groups()  # type: ignore[union-attr]
    name = (path or "").lstrip(".")
    missing = _MISSING.search(message)
    if missing:
        name = f"{name}.{missing.group(1)}" if name else missing.group(1)
    return Invalid(f"invalid {where}: {exc}", [{"field": name or f"({where})", "message": message}])


async def decode_body(request: web.Request, type_: type) -> Any:
    raw = await request.read()
    try:
        return msgspec.json.decode(raw or b"{}", type=type_)
    except msgspec.ValidationError as exc:
        raise invalid(exc, "body") from None
    except msgspec.DecodeError:
        raise BadRequest("body must be a JSON object") from None


def decode_query(request: web.Request, type_: type) -> Any:
    try:
        return msgspec.convert(dict(request.query), type_, strict=False)
    except msgspec.ValidationError as exc:
        raise invalid(exc, "query") from None


def json_response(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(value), status=status, content_type="application/json")


def gate(auth: Authenticator, min_role: str,
         inner: Callable[[web.Request, Principal], Awaitable[web.StreamResponse]]) -> Callable[
             [web.Request], Awaitable[web.StreamResponse]]:
    """Authenticate and check the role before anything of the request is looked at."""
    async def handler(request: web.Request) -> web.StreamResponse:
        who = await auth.principal(bearer_token(request))
        require_role(who, min_role)
        return await inner(request, who)
    return handler


def _handler(route: Route, service: AdminService) -> Callable[[web.Request, Principal], Awaitable[web.Response]]:
    async def handle(request: web.Request, who: Principal) -> web.Response:
        path: dict[str, Any] = dict(request.match_info)
        for name in route.int_params:
            path[name] = int(path[name])
            if path[name] < 1:
                raise NotFound("ids and seqs start at 1")
        body = await decode_body(request, route.body) if route.body is not None else None
        query = decode_query(request, route.query) if route.query is not None else None
        return json_response(await route.call(service, Call(who, path, body, query)), route.status)
    return handle


def register(app: web.Application, service: AdminService, auth: Authenticator,
             openapi: Callable[[], dict[str, Any]]) -> None:
    for route in ROUTES:
        path = PREFIX + route.path.replace(":int}", ":[0-9]{1,15}}")
        app.router.add_route(route.method, path, gate(auth, route.min_role, _handler(route, service)))

    async def document(_: web.Request, __: Principal) -> web.Response:
        return json_response(openapi())

    app.router.add_get(PREFIX + "/openapi.json", gate(auth, "moderator", document))
