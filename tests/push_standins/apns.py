"""An APNs stand-in: Apple's provider API (`POST /3/device/<token>`) over HTTP/2 and TLS on
loopback, with token authentication.

It checks what APNs checks: the provider token (an ES256 JWT with the key id and team id),
the topic (the app's bundle id or its `.voip` variant), the device token's shape, the
collapse id's length, the priority a push type allows and the payload limit, and answers
errors as APNs does: a status and a JSON body with the reason (410 with a timestamp).
"""

from __future__ import annotations

import json
import re
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from aioapns import APNs

from push.providers.apns import apns_client
from tests.push_standins.h2server import H2Standin, Response
from tests.push_standins.keys import APNS_KEY_ID, APNS_TEAM_ID, APNS_TOPIC, public_key_pem

#: Device tokens are hex: 32 bytes today, possibly longer later.
DEVICE_TOKEN = re.compile(r"^[0-9a-fA-F]{64,200}$")
MAX_PAYLOAD_BYTES = 4096
MAX_VOIP_PAYLOAD_BYTES = 5120


def standin_client(port: int, key_path: Path, client_tls: ssl.SSLContext, *, topic: str = APNS_TOPIC) -> APNs:
    """The product's aioapns client (token auth), its connections sent to the stand-in on `port`."""
    return apns_client(key_path=key_path, key_id=APNS_KEY_ID, team_id=APNS_TEAM_ID, topic=topic, sandbox=True,
                       ssl_context=client_tls, endpoint=f"127.0.0.1:{port}")


@dataclass
class Received:
    """One push as the stand-in got it."""

    headers: dict[str, str]
    payload: dict[str, Any]
    status: int

    @property
    def token(self) -> str:
        return self.headers[":path"].removeprefix("/3/device/")


class ApnsStandin(H2Standin[Received]):
    def __init__(self, tls: ssl.SSLContext, signing_key_pem: str, topic: str = APNS_TOPIC) -> None:
        super().__init__(tls, max_streams=1000)  # Apple allows 1,000 concurrent streams per connection
        self.public_key = public_key_pem(signing_key_pem)
        self.topic = topic
        self._valid_provider_tokens: set[str] = set()  # aioapns reuses one for 30 minutes

    async def start(self) -> int:
        return await self._server.start()

    async def stop(self) -> None:
        await self._server.stop()

    def client(self, key_path: Path, client_tls: ssl.SSLContext) -> APNs:
        """The product's aioapns client (token auth), its connections sent to this stand-in."""
        return standin_client(self.port, key_path, client_tls, topic=self.topic)

    def answer(self, headers: dict[str, str], body: bytes) -> Response | None:
        """The response to a request, or None to never answer it."""
        status, reason = self._check(headers, body)
        token = headers.get(":path", "").removeprefix("/3/device/")
        if status == 200 and (plan := self.script.next(token)) is not None:
            if plan.status is None:
                return None
            status, reason = plan.status, plan.reason
        try:
            payload = json.loads(body)
        except ValueError:
            payload = {}
        self.received.append(Received(headers, payload, status))
        apns_id = [("apns-id", headers.get("apns-id", ""))]
        if status == 200:
            return Response(200, apns_id)
        error: dict[str, Any] = {"reason": reason}
        if status == 410:
            error["timestamp"] = int(time.time() * 1000)
        return Response(status, apns_id + [("content-type", "application/json")], json.dumps(error).encode())

    def _provider_token_valid(self, token: str) -> bool:
        if token in self._valid_provider_tokens:
            return True
        try:
            claims = jwt.decode(token, self.public_key, algorithms=["ES256"], options={"require": ["iss", "iat"]})
        except jwt.InvalidTokenError:
            return False
        if jwt.get_unverified_header(token).get("kid") != APNS_KEY_ID or claims["iss"] != APNS_TEAM_ID:
            return False
        self._valid_provider_tokens.add(token)
        return True

    def _check(self, headers: dict[str, str], body: bytes) -> tuple[int, str | None]:
        if headers.get(":method") != "POST" or not headers.get(":path", "").startswith("/3/device/"):
            return 405, "MethodNotAllowed"
        auth = headers.get("authorization", "")
        if not auth.startswith("bearer "):
            return 403, "MissingProviderToken"
        if not self._provider_token_valid(auth.removeprefix("bearer ")):
            return 403, "InvalidProviderToken"
        push_type = headers.get("apns-push-type", "alert")
        topic = headers.get("apns-topic", "")
        if topic not in (self.topic, self.topic + ".voip"):
            return 400, "TopicDisallowed"
        if (push_type == "voip") != topic.endswith(".voip"):
            return 400, "InvalidPushType"
        if not DEVICE_TOKEN.match(headers[":path"].removeprefix("/3/device/")):
            return 400, "BadDeviceToken"
        if len(headers.get("apns-collapse-id", "").encode()) > 64:
            return 400, "BadCollapseId"
        if headers.get("apns-priority", "10") not in ("5", "10") or (
                push_type == "background" and headers.get("apns-priority") == "10"):
            return 400, "BadPriority"
        limit = MAX_VOIP_PAYLOAD_BYTES if push_type == "voip" else MAX_PAYLOAD_BYTES
        if len(body) > limit:
            return 413, "PayloadTooLarge"
        if not body:
            return 400, "PayloadEmpty"
        return 200, None
