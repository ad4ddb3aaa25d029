"""The FCM pushkin: Android pushes over FCM's HTTP v1 API through firebase-admin.

`messaging.send_each_async` takes at most 500 messages a call and answers each on its own;
this client cuts a larger list into such calls and classifies each answer (errors.py).
firebase-admin's own retries (500 and 503, up to four times, Retry-After ignored) are left out,
so that retrying is decided in one place (push/retry.py) and a throttled send comes back as
`Retry` at once instead of holding its whole call.

Each message is one HTTP/2 request (FCM's v1 API has no batch call), so what a request costs
besides its bytes is paid per push: firebase-admin's messages go through `FcmHttp`, which sends
them with the access token set once per refresh instead of firebase-admin's own httpx client.
"""

from __future__ import annotations

import asyncio
import secrets
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import firebase_admin
import httpx
import msgspec
from firebase_admin import credentials, messaging
from firebase_admin._http_client import METRICS_HEADERS
from google.auth.credentials import TokenState
from google.auth.transport.requests import Request as GoogleAuthRequest

from push.notification import Outcome, PushRequest, Retry
from push.payloads import FcmPayload, PayloadError, fcm_payload
from push.providers.errors import FCM_TOKEN_REFUSED, fcm_outcome, unanswered_outcome

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


class FcmHttp:
    """The HTTP client firebase-admin's messaging service sends each message through (in place of
    its `HttpxAsyncClient`, of which it calls `request` only): straight to httpx's HTTP/2
    transport, with the access token the pushkin set, the URL parsed once and the JSON encoded
    by msgspec.

    firebase-admin's client cost about a fifth of the CPU of a push (loadtests/push_cpu.py) in
    things FCM sends do not need: an auth flow that builds a requests.Session per request to
    check the token, a retry wrapper that deep-copies its configuration with retries off, cookie
    jars, the URL parsed twice. What it did that matters is kept: the token is fetched before it
    expires (FcmPushkin._fresh_token), and a token FCM refuses is fetched again (FCM_TOKEN_REFUSED).
    """

    def __init__(self, url: str, timeout_s: float) -> None:
        self.url = url
        self._url = httpx.URL(url)
        self._transport = httpx.AsyncHTTPTransport(http2=True)
        self._timeout = {"connect": timeout_s, "read": timeout_s, "write": timeout_s, "pool": timeout_s}
        self._headers = {**METRICS_HEADERS, "Content-Type": "application/json"}

    def authorize(self, access_token: str) -> None:
        self._headers["Authorization"] = "Bearer " + access_token

    async def request(self, method: str, url: str, *, headers: dict[str, str], json: Any) -> httpx.Response:
        """firebase-admin's call for one message (to the one URL this client was made for):
        the answer, or httpx.HTTPStatusError for a refusal, as HttpxAsyncClient raises it."""
        request = httpx.Request(method, self._url, headers={**self._headers, **headers}, content=_encode(json),
                                extensions={"timeout": self._timeout})
        response = await self._transport.handle_async_request(request)
        response.request = request
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response.raise_for_status()

    async def aclose(self) -> None:
        await self._transport.aclose()


_encode = msgspec.json.Encoder().encode


class FcmPushkin:
    """Sends to FCM tokens; owns `app` and deletes it on close."""

    def __init__(self, app: firebase_admin.App, *, timeout_s: float, endpoint: str = FCM_ENDPOINT) -> None:
        self._app = app
        self._timeout_s = timeout_s
        self._calls = asyncio.Semaphore(FCM_CALLS_IN_FLIGHT)
        self._credential = app.credential.get_credential()
        self._token_refused = False
        self._http = FcmHttp(f"{endpoint.rstrip('/')}/v1/projects/{app.project_id}/messages:send", timeout_s)
        # firebase-admin has no setting for either: its messaging service is created once per
        # app, and these are the attributes it reads on every send.
        service = messaging._get_messaging_service(app)
        service._async_client = self._http
        service._fcm_url = self._http.url

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
        outcomes = [fcm_outcome(request, r.exception) for request, r in zip(requests, response.responses)]
        if any(isinstance(o, Retry) and o.reason == FCM_TOKEN_REFUSED for o in outcomes):
            self._token_refused = True
        return outcomes

    async def _fresh_token(self) -> None:
        """Fetches the OAuth token in a thread when it is missing, about to expire or was refused:
        google-auth would otherwise fetch it with blocking I/O on the event loop."""
        if self._token_refused or self._credential.token_state is not TokenState.FRESH:
            self._token_refused = False
            await asyncio.to_thread(self._credential.refresh, GoogleAuthRequest())
        self._http.authorize(self._credential.token)

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
