"""The SDK's REST calls: accounts (register, login), login sessions (refresh, logout, my
sessions, password change) and attachments (upload, fetch).

A refusal raises the `parley.errors` class of its wire code, whose `http_status` is the status
the server answered (415 for a MIME type it does not take, 422 for an invalid body, ...).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
import msgspec

from parley.errors import Internal, ParleyError, error_for_code
from parley.sdk.wire import Frame, json_object
from parley.sdk.transport import AiohttpTransport, HttpResponse, Transport


@dataclass(frozen=True)
class Account:
    """A login: the access token (`token`, good until `expires_at`, unix seconds) and the
    refresh token that gets the next pair (until `refresh_expires_at`). A refresh spends the
    refresh token: keep the newest Account (`refresh`, `Client.account`), never an older one,
    whose reuse the server takes for theft and answers by ending the login."""

    user_id: str
    token: str
    username: str
    refresh_token: str | None = None
    expires_at: int | None = None
    refresh_expires_at: int | None = None


async def register(
    base_url: str, username: str, password: str, *, transport: Transport | None = None
) -> Account:
    """POST /v1/auth/register; raises Conflict (name taken) or another ParleyError on failure."""
    return await _auth(base_url, "/v1/auth/register", username, password, transport)


async def login(
    base_url: str, username: str, password: str, *, transport: Transport | None = None
) -> Account:
    """POST /v1/auth/login; raises Unauthorized (wrong password) or another ParleyError on failure."""
    return await _auth(base_url, "/v1/auth/login", username, password, transport)


async def refresh(base_url: str, account: Account, *, transport: Transport | None = None) -> Account:
    """POST /v1/auth/refresh: the next pair of the login. Unauthorized when the login is over
    (revoked, expired, or `account` is not the newest: then the login is revoked for good)."""
    if account.refresh_token is None:
        raise ValueError("this account has no refresh token (a guest, or a bare access token)")
    async with _borrowed(transport) as via:
        body = await _rest(via, "POST", base_url.rstrip("/") + "/v1/auth/refresh",
                           {"refresh_token": account.refresh_token})
    return _account(body, account.username)


async def _auth(
    base_url: str, path: str, username: str, password: str, transport: Transport | None
) -> Account:
    async with _borrowed(transport) as via:
        body = await _rest(via, "POST", base_url.rstrip("/") + path,
                           {"username": username, "password": password})
    # The server lowercases names; echo its spelling when it sends one.
    name = body.get("username")
    return _account(body, name if isinstance(name, str) else username.lower())


def _account(body: Frame, username: str) -> Account:
    def number(key: str) -> int | None:
        value = body.get(key)
        return value if isinstance(value, int) else None

    refresh_token = body.get("refresh_token")
    return Account(user_id=str(body["user_id"]), token=str(body["token"]), username=username,
                   refresh_token=refresh_token if isinstance(refresh_token, str) else None,
                   expires_at=number("expires_at"), refresh_expires_at=number("refresh_expires_at"))


async def logout(base_url: str, token: str, *, transport: Transport | None = None) -> int:
    """POST /v1/auth/logout: this login ends (its live sessions close 4003); how many ended."""
    return await _ended(base_url, "POST", "/v1/auth/logout", token, transport)


async def logout_everywhere(base_url: str, token: str, *, transport: Transport | None = None) -> int:
    """POST /v1/auth/logout/all: every login of the user ends; how many were live."""
    return await _ended(base_url, "POST", "/v1/auth/logout/all", token, transport)


async def list_sessions(base_url: str, token: str, *, transport: Transport | None = None) -> list[Frame]:
    """GET /v1/me/sessions: the user's live logins (`id`, `label`, `created_at`, `last_used_at`,
    `expires_at`, `current`), most recently used first."""
    async with _borrowed(transport) as via:
        body = await _rest(via, "GET", base_url.rstrip("/") + "/v1/me/sessions", None, token)
    sessions = body.get("sessions")
    return [s for s in sessions if isinstance(s, dict)] if isinstance(sessions, list) else []


async def revoke_session(base_url: str, token: str, session_id: str, *, transport: Transport | None = None) -> None:
    """DELETE /v1/me/sessions/{id}: that login ends; NotFound if the user has no such live one."""
    await _ended(base_url, "DELETE", f"/v1/me/sessions/{session_id}", token, transport)


async def change_password(base_url: str, token: str, old_password: str, new_password: str,
                          *, transport: Transport | None = None) -> int:
    """POST /v1/me/password: Forbidden if `old_password` is wrong; every other login of the user
    ends (how many)."""
    async with _borrowed(transport) as via:
        body = await _rest(via, "POST", base_url.rstrip("/") + "/v1/me/password",
                           {"old_password": old_password, "new_password": new_password}, token)
    return int(body["sessions_revoked"])


async def _ended(base_url: str, method: str, path: str, token: str, transport: Transport | None) -> int:
    async with _borrowed(transport) as via:
        body = await _rest(via, method, base_url.rstrip("/") + path, None, token)
    return int(body["sessions_revoked"])


async def upload(
    base_url: str, token: str, conv: str, name: str, mime: str, data: bytes,
    *, transport: Transport | None = None,
) -> Frame:
    """Attach a file: POST /v1/uploads, PUT the bytes to the URL it returns (with exactly the
    headers it returns), then complete the upload. Returns the attachment object, whose `id`
    goes into `send(..., attachments=[id])`. Raises a ParleyError on a refusal."""
    base = base_url.rstrip("/")
    async with _borrowed(transport) as via:
        slot = await _rest(via, "POST", base + "/v1/uploads",
                           {"conv": conv, "name": name, "mime": mime, "size": len(data)}, token)
        stored = await via.request(slot["method"], slot["upload_url"], data, slot["headers"])
        if stored.status >= 300:
            raise _error(stored)
        return await _rest(via, "POST", f"{base}/v1/uploads/{slot['id']}/complete", None, token)


async def attachment(
    base_url: str, token: str, attachment_id: str, *, transport: Transport | None = None
) -> Frame:
    """GET /v1/attachments/{id}: the attachment object with a short-lived download `url`."""
    async with _borrowed(transport) as via:
        return await _rest(via, "GET", f"{base_url.rstrip('/')}/v1/attachments/{attachment_id}", None, token)


async def start_call(
    base_url: str, token: str, conv: str, media: str = "audio", *, device: str = "bot",
    transport: Transport | None = None,
) -> Frame:
    """POST /v1/convs/{conv}/calls, as a bot calls: `call` and `join` (LiveKit's token for
    `user:device`)."""
    async with _borrowed(transport) as via:
        return await _rest(via, "POST", f"{base_url.rstrip('/')}/v1/convs/{conv}/calls",
                           {"media": media, "device": device}, token)


async def call_action(
    base_url: str, token: str, call: str, action: str, *, device: str = "bot", transport: Transport | None = None,
) -> Frame:
    """POST /v1/calls/{call}/{action}: `join` (answers `call` and `join`), `decline`, `leave` or
    `end` (answer `call`)."""
    body: Frame | None = {"device": device} if action == "join" else None
    async with _borrowed(transport) as via:
        return await _rest(via, "POST", f"{base_url.rstrip('/')}/v1/calls/{call}/{action}", body, token)


async def rest_call(base_url: str, method: str, path: str, token: str, body: Frame | None = None,
                    *, transport: Transport | None = None) -> Frame:
    """One authenticated JSON REST call (the SDK's other modules make theirs so): the answer's
    JSON object, {} for 204 No Content; a refusal raises its ParleyError."""
    async with _borrowed(transport) as via:
        return await _rest(via, method, base_url.rstrip("/") + path, body, token)


@contextlib.asynccontextmanager
async def _borrowed(transport: Transport | None) -> AsyncIterator[Transport]:
    """The caller's transport, left open; or the default one, for this call only."""
    if transport is not None:
        yield transport
        return
    async with AiohttpTransport() as own:
        yield own


async def _rest(
    transport: Transport, method: str, url: str, body: Frame | None, token: str | None = None
) -> Frame:
    """One JSON REST call; a non-2xx answer raises the ParleyError of its error body."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    payload = msgspec.json.encode(body) if body is not None else None
    resp = await transport.request(method, url, payload, headers)
    if resp.status >= 300:
        raise _error(resp)
    if resp.status == 204:
        return {}
    decoded = json_object(resp.body)
    if decoded is None:
        raise _answered(Internal(f"{method} {url} answered no JSON object"), resp.status)
    return decoded


def _error(resp: HttpResponse) -> ParleyError:
    """The ParleyError of a refusal's error body (`{"error": {"code", "message", "rule"?}}`)."""
    retry_ms: int | None = None
    retry_after = resp.headers.get("Retry-After")
    if retry_after is not None:
        with contextlib.suppress(ValueError):  # an HTTP-date: leave it to the caller
            retry_ms = int(float(retry_after) * 1000)
    body = json_object(resp.body)
    err = body.get("error") if body is not None else None
    if isinstance(err, dict):
        rule = err.get("rule")
        found = error_for_code(str(err.get("code", "internal")), str(err.get("message", "")), retry_ms,
                               rule=rule if isinstance(rule, str) else None)
    else:  # not our error body (a proxy, a crash): keep what we got for the test output
        found = Internal(resp.body[:200].decode("utf-8", "replace"), retry_after_ms=retry_ms)
    return _answered(found, resp.status)


def _answered(err: ParleyError, status: int) -> ParleyError:
    # The class says what went wrong; the instance keeps what this server answered.
    err.http_status = status
    return err
