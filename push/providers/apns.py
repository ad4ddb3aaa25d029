"""The APNs pushkin: iOS pushes (alerts, background updates, VoIP calls) through aioapns.

aioapns speaks HTTP/2 to Apple with token (JWT) authentication and multiplexes requests over
a few connections. A request Apple never answers leaves its future waiting forever
(aioapns#41; Pushy saw the same from APNs itself), so every send is bounded by a timeout and
a send that runs out of time comes back as `Retry`.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from pathlib import Path

from aioapns import APNs, NotificationRequest, PushType
from aioapns.common import NotificationResult
from aioapns.connection import APNsTLSClientProtocol

from push.notification import Outcome, PushRequest
from push.payloads import apns_payload
from push.providers.errors import apns_outcome, unanswered_outcome

#: Requests waiting for an answer at once. Apple allows 1,000 streams per connection and
#: aioapns opens up to `max_connections`; a send queued behind a full pool would spend its
#: timeout waiting, so the pushkin queues it here instead, before its clock starts.
APNS_IN_FLIGHT = 1000


async def _ignore_failure(request: NotificationRequest, result: NotificationResult) -> None:
    """aioapns logs every refused push at ERROR unless given a hook; errors.py classifies them."""


def apns_client(*, key_path: Path, key_id: str, team_id: str, topic: str, sandbox: bool,
                ssl_context: ssl.SSLContext | None = None, endpoint: str | None = None) -> APNs:
    """An aioapns client with token authentication (the .p8 key at `key_path`), sending to
    Apple or to `endpoint` (host:port). Call it inside the event loop that will send: aioapns
    binds its pool to the running loop."""
    client = APNs(key=key_path.read_text(), key_id=key_id, team_id=team_id, topic=topic, use_sandbox=sandbox,
                  # aioapns tries again after a failed connect, a second apart; one more try
                  # survives a connection Apple closed while idle, push/retry.py does the rest.
                  max_connection_attempts=2, ssl_context=ssl_context, err_func=_ignore_failure)
    if endpoint is not None:
        host, _, port = endpoint.rpartition(":")

        class ElsewhereProtocol(APNsTLSClientProtocol):
            # aioapns reads where to connect from its protocol class (Apple's host, port 443).
            APNS_SERVER = host
            APNS_PORT = int(port)
        client.pool.protocol_class = ElsewhereProtocol
    return client


class ApnsPushkin:
    """Sends to APNs tokens, ordinary and VoIP; owns `client` and closes it on close."""

    def __init__(self, client: APNs, *, timeout_s: float, in_flight: int = APNS_IN_FLIGHT) -> None:
        self._client = client
        self._timeout_s = timeout_s
        self._slots = asyncio.Semaphore(in_flight)

    async def send(self, requests: Sequence[PushRequest]) -> list[Outcome]:
        return list(await asyncio.gather(*(self._send_one(r) for r in requests)))

    async def _send_one(self, request: PushRequest) -> Outcome:
        try:
            payload = apns_payload(request)
            notification = NotificationRequest(
                device_token=request.token, message=payload.body, priority=payload.priority,
                collapse_key=payload.collapse_id, push_type=PushType(payload.push_type),
                time_to_live=payload.ttl_s, apns_topic=payload.topic)
            async with self._slots:
                result = await asyncio.wait_for(self._client.send_notification(notification), self._timeout_s)
        except Exception as error:
            return unanswered_outcome(request, error)
        return apns_outcome(request, int(result.status), result.description)

    async def close(self) -> None:
        self._client.pool.close()
