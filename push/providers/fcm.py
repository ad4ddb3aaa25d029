"""The FCM pushkin: Android pushes over FCM's HTTP v1 API through firebase-admin.

`messaging.send_each_async` takes at most 500 messages a call and answers each on its own;
this client cuts a larger list into such calls and classifies each answer (errors.py).
firebase-admin's own retries (500 and 503, up to four times, Retry-After ignored) are turned
off, so that retrying is decided in one place (push/retry.py) and a throttled send comes back
as `Retry` at once instead of holding its whole call.
"""

from __future__ import annotations

import asyncio
import secrets
import warnings
from collections.abc import Sequence
from pathlib import Path

import firebase_admin
from firebase_admin import credentials, messaging
from firebase_admin._http_client import HttpxAsyncClient
from firebase_admin._retry import HttpxRetry
from google.auth.credentials import TokenState
from google.auth.transport.requests import Request as GoogleAuthRequest

from push.notification import Outcome, PushRequest
from push.payloads import FcmPayload, PayloadError, fcm_payload
from push.providers.errors import fcm_outcome, unanswered_outcome

FCM_ENDPOINT = "https://fcm.googleapis.com"
#: `send_each_async` refuses more in one call.
FCM_BATCH_MAX = 500
#: Calls of up to 500 at once. httpcore's pool walks every request in flight whenever one
#: starts or ends, so its cost per request grows with their number: measured against the
#: stand-in, 1 or 2 calls at once sent ~1,000 pushes/s, 4 at once 790 (loadtests/push_bench.py).
FCM_CALLS_IN_FLIGHT = 2


def fcm_app(service_account_json: Path) -> firebase_admin.App:
    """A firebase-admin app of its own (apps are global by name) for a service account file."""
    return firebase_admin.initialize_app(credentials.Certificate(str(service_account_json)),
                                         name=f"parley-push-{secrets.token_hex(4)}")


class FcmPushkin:
    """Sends to FCM tokens; owns `app` and deletes it on close."""

    def __init__(self, app: firebase_admin.App, *, timeout_s: float, endpoint: str = FCM_ENDPOINT) -> None:
        self._app = app
        self._timeout_s = timeout_s
        self._calls = asyncio.Semaphore(FCM_CALLS_IN_FLIGHT)
        self._credential = app.credential.get_credential()
        self._http = HttpxAsyncClient(credential=self._credential, timeout=timeout_s,
                                      retry_config=HttpxRetry(max_retries=0))
        # firebase-admin has no setting for either: its messaging service is created once per
        # app, and these are the attributes it reads on every send.
        service = messaging._get_messaging_service(app)
        service._async_client = self._http
        service._fcm_url = f"{endpoint.rstrip('/')}/v1/projects/{app.project_id}/messages:send"

    async def send(self, requests: Sequence[PushRequest]) -> list[Outcome]:
        outcomes: dict[int, Outcome] = {}
        ready: list[tuple[int, messaging.Message]] = []
        for i, request in enumerate(requests):
            try:
                ready.append((i, _message(request.token, fcm_payload(request))))
            except PayloadError as error:
                outcomes[i] = unanswered_outcome(request, error)
        for start in range(0, len(ready), FCM_BATCH_MAX):
            batch = ready[start:start + FCM_BATCH_MAX]
            for (i, _), outcome in zip(batch, await self._send_batch([requests[i] for i, _ in batch],
                                                                     [m for _, m in batch])):
                outcomes[i] = outcome
        return [outcomes[i] for i in range(len(requests))]

    async def _send_batch(self, requests: list[PushRequest], messages: list[messaging.Message]) -> list[Outcome]:
        try:
            await self._fresh_token()
            async with self._calls:
                # Each request is bounded by the HTTP client's timeout, which applies to waiting
                # for a connection and again to its answer: twice that bounds the whole call.
                response = await asyncio.wait_for(messaging.send_each_async(messages, app=self._app),
                                                  2 * self._timeout_s)
        except Exception as error:
            return [unanswered_outcome(request, error) for request in requests]
        return [fcm_outcome(request, r.exception) for request, r in zip(requests, response.responses)]

    async def _fresh_token(self) -> None:
        """Fetches the OAuth token in a thread when it is missing or about to expire:
        google-auth would otherwise fetch it with blocking I/O on the event loop."""
        if self._credential.token_state is not TokenState.FRESH:
            await asyncio.to_thread(self._credential.refresh, GoogleAuthRequest())

    async def close(self) -> None:
        await self._http.aclose()
        # delete_app closes the messaging service with asyncio.run, which needs a thread
        # without a running loop.
        await asyncio.to_thread(firebase_admin.delete_app, self._app)


def _message(token: str, payload: FcmPayload) -> messaging.Message:
    notification = None
    if payload.notification is not None:
        n = payload.notification
        notification = messaging.AndroidNotification(title=n.title, body=n.body, tag=n.tag,
                                                     notification_count=n.count)
    android = messaging.AndroidConfig(collapse_key=payload.collapse_key, priority=payload.priority, ttl=payload.ttl_s,
                                      notification=notification)
    with warnings.catch_warnings():
        # firebase-admin 7 deprecates registration tokens in favour of installation ids (`fid`),
        # which apps are only starting to register; FCM's API takes both, devices give tokens.
        warnings.filterwarnings("ignore", "Message.token is deprecated", DeprecationWarning)
        return messaging.Message(token=token, data=payload.data, android=android)
