"""REST routes of the gateway: accounts, client capabilities, health, and the web client;
the shared REST plumbing (error mapping, JSON bodies, bearer tokens)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from parley import __version__
from parley import limits as L
from parley.auth import Claims, Passwords, Tokens, check_password_shape, normalize_username
from parley.errors import BadRequest, Internal, NotFound, ParleyError, Unauthorized, error_body
from parley.health import Ready, add_health_routes
from parley.ids import new_user_id
from parley.limits import Limits
from parley.ports import Store
from parley.ratelimit import Limiter

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
        return web.json_response({"error": {"code": code, "message": exc.reason}}, status=exc.status)
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return error_response(Internal("internal error"))


async def json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json(loads=json.loads)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest("body must be JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    return body


def bearer(request: web.Request, tokens: Tokens) -> Claims:
    """The caller of a REST request that needs an account: `Authorization: Bearer <token>`."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("this request needs `Authorization: Bearer <token>`")
    return tokens.verify(token.strip())


class AuthRoutes:
    """register/login per PROTOCOL.md. Failed logins are limited per username against guessing."""

    def __init__(self, store: Store, tokens: Tokens, passwords: Passwords, login_failures: Limiter) -> None:
        self._store = store
        self._tokens = tokens
        self._passwords = passwords
        self._login_failures = login_failures
        self._decoy: str | None = None

    async def register(self, request: web.Request) -> web.Response:
        body = await json_object(request)
        username = normalize_username(body.get("username"))
        password = check_password_shape(body.get("password"))
        hashed = await asyncio.to_thread(self._passwords.hash, password)
        user_id = new_user_id()
        await self._store.create_user(user_id, username, hashed, int(time.time() * 1000))
        return web.json_response({"user_id": user_id, "token": self._tokens.issue(user_id)}, status=201)

    async def login(self, request: web.Request) -> web.Response:
        body = await json_object(request)
        username, password = body.get("username"), body.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            raise BadRequest("username and password must be strings")
        username = username.strip().lower()
        found = await self._store.user_by_name(username)
        # Verify even for an unknown name, so timing does not tell which names exist.
        hashed = found[1] if found else await self._decoy_hash()
        if not await asyncio.to_thread(self._passwords.verify, hashed, password) or found is None:
            await self._login_failures.hit(username)
            raise Unauthorized("wrong username or password")
        return web.json_response({"user_id": found[0], "token": self._tokens.issue(found[0])})

    async def _decoy_hash(self) -> str:
        if self._decoy is None:
            self._decoy = await asyncio.to_thread(self._passwords.hash, "no account has this password")
        return self._decoy


def capabilities(limits: Limits) -> dict[str, Any]:
    return {
        "version": __version__,
        "protocol": 1,
        "subprotocols": ["parley.v1.json"],
        "limits": {**limits.public(), "heartbeat_s": limits.heartbeat_s},
        "rate_limits": {"send": {"burst": limits.send_burst, "window_s": limits.send_window_s}},
        "uploads": {"max_bytes": limits.max_upload_bytes, "mime": list(limits.upload_mime),
                    "max_per_message": L.MAX_ATTACHMENTS_PER_MESSAGE,
                    "max_name_chars": L.MAX_ATTACHMENT_NAME_CHARS},
        "features": {
            "direct": True, "groups": True, "channels": True, "public_rooms": True,
            "room_passwords": True, "edit": True, "delete": True, "reactions": True,
            "read_receipts": True, "typing": True, "sync": True,
            "attachments": True, "presence": False, "calls": False, "push": False,
        },
    }


def add_routes(app: web.Application, auth: AuthRoutes, limits: Limits, ready: Ready, gateway_id: str) -> None:
    caps = capabilities(limits)

    async def get_capabilities(_: web.Request) -> web.Response:
        return web.json_response(caps)

    async def index(_: web.Request) -> web.FileResponse:
        if not (STATIC / "index.html").exists():
            raise NotFound("the web client is not installed")
        return web.FileResponse(STATIC / "index.html")

    app.router.add_post("/v1/auth/register", auth.register)
    app.router.add_post("/v1/auth/login", auth.login)
    app.router.add_get("/v1/client/capabilities", get_capabilities)
    add_health_routes(app, ready, gateway_id)
    app.router.add_get("/", index)
    if STATIC.is_dir():
        app.router.add_static("/static/", STATIC)
