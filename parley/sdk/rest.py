"""The SDK's REST calls: accounts (register, login) and attachments (upload, fetch).

A refusal raises the `parley.errors` class of its wire code, whose `http_status` is the status
the server answered (415 for a MIME type it does not take, 422 for an invalid body, ...).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
import msgspec

from parley.errors import Internal, ParleyError, error_for_code
from parley.sdk.events import Frame, json_object
from parley.sdk.transport import AiohttpTransport, HttpResponse, Transport


@dataclass(frozen=True)
class Account:
    user_id: str
    token: str
    username: str


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


async def _auth(
    base_url: str, path: str, username: str, password: str, transport: Transport | None
) -> Account:
    async with _borrowed(transport) as via:
        body = await _rest(via, "POST", base_url.rstrip("/") + path,
                           {"username": username, "password": password})
    # The server lowercases names; echo its spelling when it sends one.
    name = body.get("username")
    return Account(
        user_id=str(body["user_id"]),
        token=str(body["token"]),
        username=name if isinstance(name, str) else username.lower(),
    )


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
