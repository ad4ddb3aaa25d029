"""An FCM stand-in: the HTTP v1 send endpoint (`POST /v1/projects/P/messages:send`) over
HTTP/2 and TLS, as Google serves it, and the OAuth token endpoint a service account signs in
at (HTTP/1.1, as google-auth fetches it), on loopback.

It checks what FCM checks: the access token it issued (for an assertion signed with the
service account's key), the token's alphabet and the 4 KB limit, and answers errors with
FCM's error body (a google.rpc status with an FcmError detail), which firebase-admin turns
into its own exception classes.
"""

from __future__ import annotations

import json
import re
import secrets
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from aiohttp import web

from tests.push_standins.h2server import H2Standin, Response
from tests.push_standins.keys import public_key_pem

PROJECT = "parley-standin"
CLIENT_EMAIL = "push@parley-standin.iam.gserviceaccount.com"
SEND_PATH = f"/v1/projects/{PROJECT}/messages:send"
#: google-auth signs its assertion for Google's token endpoint, whichever `token_uri` it posts to.
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
#: Registration tokens are made of these (a made-up token with others is INVALID_ARGUMENT).
TOKEN_ALPHABET = re.compile(r"^[A-Za-z0-9_:\-]+$")
MAX_PAYLOAD_BYTES = 4096
#: google.rpc status names by HTTP status, as FCM answers them.
RPC_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
              429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}


@dataclass
class Received:
    """One send as the stand-in got it."""

    headers: dict[str, str]
    message: dict[str, Any]
    status: int


def error_body(status: int, fcm_code: str | None, message: str) -> dict[str, Any]:
    details = [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": fcm_code}] if fcm_code else []
    return {"error": {"code": status, "message": message, "status": RPC_STATUS.get(status, "UNKNOWN"),
                      "details": details}}


class FcmStandin(H2Standin[Received]):
    def __init__(self, tls: ssl.SSLContext, service_account_key_pem: str) -> None:
        super().__init__(tls, max_streams=100)  # Google's front ends allow 100 streams per connection
        self.private_key_pem = service_account_key_pem
        self.public_key = public_key_pem(service_account_key_pem)
        self.tokens_issued = 0
        self._access_tokens: set[str] = set()
        self._oauth: web.AppRunner | None = None
        self.token_uri = ""

    @property
    def url(self) -> str:
        """Where firebase-admin sends (its `https://fcm.googleapis.com`)."""
        return f"https://127.0.0.1:{self.port}"

    async def start(self) -> None:
        await self._server.start()
        app = web.Application()
        app.router.add_post("/token", self._token)
        self._oauth = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._oauth.setup()
        site = web.TCPSite(self._oauth, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.token_uri = f"http://127.0.0.1:{port}/token"

    async def stop(self) -> None:
        await self._server.stop()
        if self._oauth is not None:
            await self._oauth.cleanup()

    def write_service_account(self, path: Path) -> Path:
        """A service account key file that signs in at this stand-in."""
        path.write_text(json.dumps({
            "type": "service_account", "project_id": PROJECT, "private_key_id": "standin",
            "private_key": self.private_key_pem, "client_email": CLIENT_EMAIL, "client_id": "1",
            "token_uri": self.token_uri}))
        return path

    def revoke_tokens(self) -> None:
        """Every access token issued so far is refused from now on (401, as Google answers)."""
        self._access_tokens.clear()

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        try:
            claims = jwt.decode(str(form.get("assertion", "")), self.public_key, algorithms=["RS256"],
                                audience=GOOGLE_TOKEN_AUDIENCE)
        except jwt.InvalidTokenError as e:
            return web.json_response({"error": "invalid_grant", "error_description": str(e)}, status=400)
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" or claims.get("iss") != CLIENT_EMAIL:
            return web.json_response({"error": "invalid_grant"}, status=400)
        token = "ya29.standin-" + secrets.token_urlsafe(16)
        self._access_tokens.add(token)
        self.tokens_issued += 1
        return web.json_response({"access_token": token, "expires_in": 3600, "token_type": "Bearer"})

    def answer(self, headers: dict[str, str], body: bytes) -> Response | None:
        message: dict[str, Any] = json.loads(body or b"{}").get("message", {})
        answer = self._answer(headers, message)
        if answer is None:
            return None
        status, error, extra = answer
        self.received.append(Received(headers, message, status))
        reply = error or {"name": f"projects/{PROJECT}/messages/{secrets.token_hex(8)}"}
        return Response(status, [("content-type", "application/json"), *extra], json.dumps(reply).encode())

    def _answer(self, headers: dict[str, str], message: dict[str, Any]
                ) -> tuple[int, dict[str, Any] | None, list[tuple[str, str]]] | None:
        """(status, error body or None, extra headers) for a send, or None to never answer."""
        if headers.get(":path") != SEND_PATH or headers.get(":method") != "POST":
            return 404, error_body(404, None, "Not found."), []
        if headers.get("authorization", "").removeprefix("Bearer ") not in self._access_tokens:
            return 401, error_body(401, None, "Request had invalid authentication credentials."), []
        token = message.get("token", "")
        if not TOKEN_ALPHABET.match(token):
            return 400, error_body(400, None, "The registration token is not a valid FCM registration token"), []
        counted = {"data": message.get("data", {}), "notification": message.get("android", {}).get("notification", {})}
        if len(json.dumps(counted, ensure_ascii=False, separators=(",", ":")).encode()) > MAX_PAYLOAD_BYTES:
            return 400, error_body(400, None, "Message is too big"), []
        plan = self.script.next(token)
        if plan is None:
            return 200, None, []
        if plan.status is None:
            return None
        extra = [("retry-after", plan.retry_after)] if plan.retry_after else []
        return plan.status, error_body(plan.status, plan.reason, "scripted"), extra
