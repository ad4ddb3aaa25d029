"""REST routes of the gateway: accounts (register, login, guest), reports, privacy (export,
delete), client capabilities, health, and the web client; the shared REST plumbing (error
mapping, JSON bodies, bearer tokens). The admin API's routes live in moderation.admin.routes,
those of login sessions (refresh, logout, my sessions, password) in gateway/session_routes.py;
both are mounted next to these (same error middleware)."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web

from calls.join import CallCapabilities
from moderation import instance_policy, privacy, reports
from moderation.admin import bodies as B
from moderation.admin.routes import bearer_token, decode_body, json_response
from moderation.admin.service import Commands
from parley import __version__
from parley import limits as L
from parley.accounts import Authenticator, now_ms, refuse_login
from parley.auth import GUEST_PREFIX, Passwords, Tokens, check_password_shape, normalize_username, worth_checking
from parley.errors import BadRequest, Forbidden, Internal, NotFound, ParleyError, Unauthorized, error_body
from parley.health import Ready, add_health_routes
from parley.ids import new_user_id
from parley.limits import Limits
from parley.ports import Store
from parley.ratelimit import Limiter
from parley.records import Account
from parley.session_families import Logins, Revoker, session_label
from parley.thumbnails import THUMB_MIME, THUMB_SIZES

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(err: ParleyError) -> web.Response:
    headers = {}
    if err.retry_after_ms is not None:
        headers["Retry-After"] = str(max(1, -(-err.retry_after_ms // 1000)))
    return web.json_response(error_body(err), status=err.http_status, headers=headers)


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every REST failure answers `{"error": {"code", "message"}}`, mapped once, here."""
    try:
        return await handler(request)
    except ParleyError as err:
        return error_response(err)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "bad_request", 413: "too_large"}.get(exc.status, "bad_request")
        return web.json_response({"error": {"code": code, "message": exc.reason}}, status=exc.status,
                                 headers={"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None)
    except web.RequestPayloadError:
        # Raised by whichever handler reads the body: not the gzip its Content-Encoding names, a
        # broken chunked encoding. The client's fault, whatever the route. The rest of the body
        # cannot be read either, so the connection ends here (`Connection: close`).
        response = error_response(BadRequest("the request body could not be read as its headers describe it"))
        response.force_close()
        return response
    except RecursionError:
        # A JSON decoder (msgspec's or the standard library's) gave up at the interpreter's
        # recursion limit, about 1,000 levels: no body of this API nests more than a few.
        return error_response(BadRequest("the body nests too deeply"))
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return error_response(Internal("internal error"))


_json_object = msgspec.json.Decoder(dict[str, Any])


async def json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object. The bytes are decoded as UTF-8 whatever charset the request
    names, and strictly: no lone surrogate reaches a password hash, no huge integer the parser."""
    try:
        return _json_object.decode(await request.read())
    except msgspec.ValidationError as exc:
        raise BadRequest(f"body must be a JSON object: {exc}") from None
    except msgspec.DecodeError:
        raise BadRequest("body must be JSON") from None


def client_ip(request: web.Request) -> str:
    """The peer address (a proxy in front must be trusted to set it; none is, today)."""
    return request.remote or "unknown"


async def ip_limit(per_ip: Limiter | None, request: web.Request) -> None:
    """Counts the request against its client IP's limit (None: no such limit)."""
    if per_ip is not None:
        await per_ip.hit(client_ip(request))


class AuthRoutes:
    """register/login per docs/protocol.md, under the instance's registration policy, and guest tokens.
    Login attempts are limited per username against guessing (a success clears the count, so
    only failures add up between successes, as Rocket.Chat counts them); all three per client IP.
    A login (a registration too) starts a login session family: parley/session_families.py."""

    def __init__(self, store: Store, tokens: Tokens, passwords: Passwords, password_attempts: Limiter,
                 logins: Logins, per_ip: Limiter | None = None) -> None:
        self._store = store
        self._tokens = tokens
        self._passwords = passwords
        self._password_attempts = password_attempts
        self._logins = logins
        self._per_ip = per_ip
        self._decoy: str | None = None

    async def _ip_limit(self, request: web.Request) -> None:
        await ip_limit(self._per_ip, request)

    async def register(self, request: web.Request) -> web.Response:
        await self._ip_limit(request)
        body = await json_object(request)
        username = normalize_username(body.get("username"))
        password = check_password_shape(body.get("password"))
        policy = await instance_policy.load(self._store)
        invite = body.get("invite")
        if policy.registration == "closed":
            raise Forbidden("registration is closed on this server")
        if policy.registration == "invite":
            if not isinstance(invite, str) or not invite:
                raise Forbidden("registration on this server needs an invite code (`invite`)")
        else:
            invite = None
        status = "pending" if policy.registration == "approval" else "active"
        label = session_label(body.get("device_name"), request.headers.get("User-Agent"))
        hashed = await asyncio.to_thread(self._passwords.hash, password)
        user_id, created = new_user_id(), now_ms()
        await self._store.create_user(user_id, username, hashed, created, status=status, invite=invite)
        if status == "pending":  # no token until a moderator approves
            return web.json_response({"user_id": user_id, "status": "pending"}, status=202)
        account = Account(id=user_id, username=username, created_at=created)
        return json_response(await self._logins.start(account, label), 201)

    async def login(self, request: web.Request) -> web.Response:
        await self._ip_limit(request)
        body = await json_object(request)
        username, password = body.get("username"), body.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            raise BadRequest("username and password must be strings")
        username = username.strip().lower()
        if not worth_checking(username, password):
            raise Unauthorized("wrong username or password")
        label = session_label(body.get("device_name"), request.headers.get("User-Agent"))
        # Every attempt counts, before any hashing: while the name is over its limit, the right
        # password is refused like a wrong one, so guessing learns nothing past the limit.
        await self._password_attempts.hit(username)
        found = await self._store.user_by_name(username)
        # Verify even for an unknown name, so timing does not tell which names exist.
        hashed = found[1] if found else await self._decoy_hash()
        if not await asyncio.to_thread(self._passwords.verify, hashed, password) or found is None:
            raise Unauthorized("wrong username or password")
        await self._password_attempts.reset(username)
        account = await self._store.account(found[0])
        if account is None:
            raise Unauthorized("wrong username or password")
        refuse_login(account, now_ms())  # pending, declined, suspended: 403 with the reason
        return json_response(await self._logins.start(account, label))

    async def guest(self, request: web.Request) -> web.Response:
        """A short-lived token for a new guest account: random handle, no password, no refresh
        token (no login session family): the guest's session ends with the token."""
        await self._ip_limit(request)
        policy = await instance_policy.load(self._store)
        if not policy.guests:
            raise Forbidden("guest access is disabled on this server")
        user_id, username = new_user_id(), GUEST_PREFIX + secrets.token_hex(5)
        await self._store.create_user(user_id, username, "", now_ms(), guest=True)
        token = self._tokens.issue(user_id, guest=True, ttl_s=policy.guest_ttl_s)
        return web.json_response({"user_id": user_id, "username": username, "token": token,
                                  "expires_at": int(time.time()) + policy.guest_ttl_s}, status=201)

    async def _decoy_hash(self) -> str:
        if self._decoy is None:
            self._decoy = await asyncio.to_thread(self._passwords.hash, "no account has this password")
        return self._decoy


class MemberRoutes:
    """What any signed-in user may do over REST: report, export their data, delete the account;
    each limited per user."""

    def __init__(self, store: Store, auth: Authenticator, commands: Commands, revoker: Revoker,
                 passwords: Passwords, password_attempts: Limiter, report_limiter: Limiter,
                 export_limiter: Limiter) -> None:
        self._store = store
        self._auth = auth
        self._commands = commands
        self._revoker = revoker
        self._passwords = passwords
        self._password_attempts = password_attempts
        self._report_limiter = report_limiter
        self._export_limiter = export_limiter

    async def report(self, request: web.Request) -> web.Response:
        who = await self._auth.principal(bearer_token(request))
        body = await decode_body(request, B.ReportBody)  # type: ignore[arg-type]
        await self._report_limiter.hit(who.user_id)
        return json_response(await reports.submit(self._store, who, body), 201)

    async def export(self, request: web.Request) -> web.Response:
        who = await self._auth.principal(bearer_token(request))
        await self._export_limiter.hit(who.user_id)  # it reads every message the user sent
        return json_response(await privacy.export(self._store, who))

    async def delete(self, request: web.Request) -> web.Response:
        who = await self._auth.principal(bearer_token(request))
        body = await decode_body(request, B.DeleteAccountBody)
        if not who.guest:  # the password is checked: it counts with the logins of the name
            await self._password_attempts.hit(who.account.username)
        return json_response(await privacy.delete_account(self._store, self._commands, self._revoker,
                                                          self._passwords, who, body.password))


def capabilities(limits: Limits, calls: CallCapabilities, push: bool = False) -> dict[str, Any]:
    """`push`: a push provider is configured (devices may register)."""
    return {
        "version": __version__,
        "protocol": 1,
        "subprotocols": ["parley.v1.json"],
        "limits": {**limits.public(), "heartbeat_s": limits.heartbeat_s},
        "rate_limits": {family: dict(zip(("burst", "window_s"), limits.rate(family)))
                        for family in sorted(set(L.RATES.values()))},
        "uploads": {"max_bytes": limits.max_upload_bytes, "mime": list(limits.upload_mime),
                    "max_per_message": L.MAX_ATTACHMENTS_PER_MESSAGE,
                    "max_name_chars": L.MAX_ATTACHMENT_NAME_CHARS},
        "features": {
            "direct": True, "groups": True, "channels": True, "public_rooms": True,
            "room_passwords": True, "edit": True, "delete": True, "reactions": True,
            "read_receipts": True, "typing": True, "sync": True,
            # Presence events are sent by every gateway (gateway/contacts.py), so this is true.
            "attachments": True, "presence": True, "calls": calls.calls, "push": push,
            "reports": True, "data_export": True, "account_deletion": True,
            "profiles": True, "directory": True, "thumbnails": True, "delivered_receipts": True,
        },
        "media": {"thumb_sizes": list(THUMB_SIZES), "thumb_mime": THUMB_MIME,
                  "avatar_max_bytes": limits.max_avatar_bytes},
        "receipts_max_members": limits.receipts_max_members,
        "calls": msgspec.to_builtins(calls),
    }


def add_routes(app: web.Application, auth: AuthRoutes, members: MemberRoutes, limits: Limits, ready: Ready,
               gateway_id: str, calls: CallCapabilities,
               ice_servers: Callable[[web.Request], Awaitable[list[Any] | None]], push: bool = False) -> None:
    """`ice_servers`: the caller's, for a capabilities request with a token (TURN credentials are
    per user); None without. `push`: a push provider is configured."""
    caps = capabilities(limits, calls, push)

    async def get_capabilities(request: web.Request) -> web.Response:
        personal = await ice_servers(request)
        if personal is None:
            return web.json_response(caps)
        return web.json_response({**caps, "calls": {**caps["calls"], "ice_servers": personal}})

    async def index(_: web.Request) -> web.FileResponse:
        if not (STATIC / "index.html").exists():
            raise NotFound("the web client is not installed")
        return web.FileResponse(STATIC / "index.html")

    app.router.add_post("/v1/auth/register", auth.register)
    app.router.add_post("/v1/auth/login", auth.login)
    app.router.add_post("/v1/auth/guest", auth.guest)
    app.router.add_post("/v1/reports", members.report)
    app.router.add_get("/v1/me/export", members.export)
    app.router.add_delete("/v1/me", members.delete)
    app.router.add_get("/v1/client/capabilities", get_capabilities)
    add_health_routes(app, ready, gateway_id)
    app.router.add_get("/", index)
    if STATIC.is_dir():
        app.router.add_static("/static/", STATIC)
