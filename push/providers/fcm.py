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
import io
import os
import secrets
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import firebase_admin
import httpx
import msgspec
from curl_cffi import AsyncCurl, Curl, CurlECode, CurlError, CurlHttpVersion, CurlInfo, CurlOpt
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
#: Calls of up to 500 at once.
FCM_CALLS_IN_FLIGHT = 2
#: Requests in flight at once, multiplexed over HTTP/2: each has a curl handle, kept for the
#: next request, of ~65 KiB (1,000 took 67 MiB, 256 take 21). At FCM's ~50-100 ms a request
#: that is 2,500-5,000 pushes/s, beyond a worker's CPU; against the stand-in 256 sent 3,690/s.
FCM_REQUESTS_IN_FLIGHT = 256


def fcm_app(service_account_json: Path) -> firebase_admin.App:
    """A firebase-admin app of its own (apps are global by name) for a service account file."""
    return firebase_admin.initialize_app(credentials.Certificate(str(service_account_json)),
                                         name=f"parley-push-{secrets.token_hex(4)}")


class FcmHttp:
    """The HTTP client firebase-admin's messaging service sends each message through (in place of
    its `HttpxAsyncClient`, of which it calls `request` only): libcurl's HTTP/2 through curl_cffi's
    `AsyncCurl`, on handles made once for FCM's one URL, with the access token the pushkin set and
    the JSON encoded by msgspec. It answers and fails as `HttpxAsyncClient` does (an
    `httpx.Response`, `httpx.HTTPStatusError` for a refusal, httpx's timeout and connection
    errors), which is what firebase-admin turns into its errors.

    Why not httpx: its HTTP/2 (httpcore over anyio: cancel scopes, locks and TLS in Python per
    request and per read) cost ~650 us of CPU per push, two thirds of a push worker's CPU;
    libcurl does that work in C. Why not curl_cffi's `AsyncSession`: it sets some twenty options
    and parses every header of every request in Python, which a client of one URL does once.
    What firebase-admin's client did that matters is kept: the token is fetched before it
    expires (FcmPushkin._fresh_token), a token FCM refuses is fetched again (FCM_TOKEN_REFUSED),
    proxies from the environment are honoured (libcurl reads `https_proxy`), and the CA bundle is
    `SSL_CERT_FILE` when set (as httpx read it), else curl_cffi's own (certifi's).
    """

    def __init__(self, url: str, timeout_s: float) -> None:
        self.url = url
        #: What an answer or a failure names as its request (firebase-admin reads only its URL).
        self._request = httpx.Request("POST", url)
        self._timeout_ms = max(1, round(timeout_s * 1000))
        self._in_flight = asyncio.Semaphore(FCM_REQUESTS_IN_FLIGHT)
        self._multi: AsyncCurl | None = None
        self._idle: list[Curl] = []
        self._fixed = [f"{k}: {v}".encode() for k, v in {**METRICS_HEADERS, "Content-Type": "application/json"}.items()]
        self._authorization = b""

    def authorize(self, access_token: str) -> None:
        self._authorization = b"Authorization: Bearer " + access_token.encode()

    async def request(self, method: str, url: str, *, headers: dict[str, str], json: Any) -> httpx.Response:
        """firebase-admin's call for one message (to the one URL this client was made for):
        the answer, or httpx.HTTPStatusError for a refusal, as HttpxAsyncClient raises it."""
        body = _encode(json)  # referenced until the transfer ends: libcurl reads it in place
        lines = [*self._fixed, self._authorization, *(f"{k}: {v}".encode() for k, v in headers.items())]
        content, head = io.BytesIO(), io.BytesIO()
        async with self._in_flight:
            if self._multi is None:  # made in the loop that sends: it binds to it
                self._multi = AsyncCurl()
            curl = self._idle.pop() if self._idle else self._handle()
            curl.setopt(CurlOpt.WRITEDATA, content)
            curl.setopt(CurlOpt.HEADERDATA, head)
            curl.setopt(CurlOpt.POSTFIELDS, body)
            curl.setopt(CurlOpt.POSTFIELDSIZE, len(body))
            curl.setopt(CurlOpt.HTTPHEADER, lines)
            try:
                await self._multi.add_handle(curl)
            except CurlError as error:
                raise _httpx_error(error, self._request) from error
            finally:
                curl.clean_handles_and_buffers()
                self._multi.remove_handle(curl)  # a cancelled transfer must leave the multi too
            status = curl.getinfo(CurlInfo.RESPONSE_CODE)
            assert isinstance(status, int)  # a long option: getinfo's union covers every kind
            self._idle.append(curl)
        # The headers are parsed only for a refusal: firebase-admin reads none of an acceptance's.
        response = httpx.Response(status, headers=_header_lines(head.getvalue()) if status >= 300 else None,
                                  content=content.getvalue(), request=self._request)
        return response.raise_for_status()

    def _handle(self) -> Curl:
        curl = Curl(cacert=os.environ.get("SSL_CERT_FILE", ""))
        curl.setopt(CurlOpt.URL, self.url.encode())
        curl.setopt(CurlOpt.HTTP_VERSION, CurlHttpVersion.V2TLS)
        # Wait for the connection in use to multiplex the request, rather than open another.
        curl.setopt(CurlOpt.PIPEWAIT, 1)
        curl.setopt(CurlOpt.TIMEOUT_MS, self._timeout_ms)
        curl.setopt(CurlOpt.NOSIGNAL, 1)
        return curl

    async def aclose(self) -> None:
        for curl in self._idle:
            curl.close()
        self._idle.clear()
        multi, self._multi = self._multi, None
        if multi is not None:
            await multi.close()


def _header_lines(raw: bytes) -> list[tuple[str, str]]:
    """The headers of the last response in `raw` (a 100 Continue comes before it)."""
    block = raw.decode("latin-1").rstrip("\r\n").rsplit("\r\n\r\n", 1)[-1]
    return [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in block.split("\r\n")[1:]) if k]


def _httpx_error(error: CurlError, request: httpx.Request) -> httpx.TransportError:
    """The httpx error firebase-admin maps a failed transfer from: a timeout, a connection that
    could not be made, or another transport failure (all three are retried: errors.py)."""
    if error.code == CurlECode.OPERATION_TIMEDOUT:
        return httpx.TimeoutException(str(error), request=request)
    if error.code in _CONNECT_FAILURES:
        return httpx.ConnectError(str(error), request=request)
    return httpx.TransportError(str(error))


_CONNECT_FAILURES = frozenset({CurlECode.COULDNT_RESOLVE_HOST, CurlECode.COULDNT_CONNECT, CurlECode.SSL_CONNECT_ERROR,
                               CurlECode.PEER_FAILED_VERIFICATION})


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
                # Each transfer (connecting included) is bounded by the HTTP client's timeout, and
                # a request waits for a free slot at most one transfer: twice that bounds the call.
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
