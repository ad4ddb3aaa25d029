"""The SDK's transport seam: the one interface through which it makes HTTP requests and opens
WebSockets, aiohttp's client as the default, and an aiohttp app served in this process.

Like httpx's `AsyncBaseTransport`, a transport knows plain requests and sockets and nothing of
the protocol, so a test swaps it without touching the REST calls or the session above it. A
transport raises ConnectionError (and only that) when the peer cannot be reached or is gone.
"""

from __future__ import annotations

import io
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import aiohttp
import yarl
from aiohttp import web


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes


class WebSocket(Protocol):
    """One open WebSocket: text frames out, frame payloads in."""

    @property
    def close_code(self) -> int | None:
        """The close code the peer sent; None while open or when it sent none."""

    @property
    def closed(self) -> bool: ...

    async def send(self, data: bytes) -> None:
        """Write one text frame."""

    async def receive(self) -> bytes | None:
        """The next text or binary frame's payload; None once the socket is closed."""

    async def close(self) -> None: ...


class Transport(Protocol):
    async def request(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> HttpResponse:
        """One HTTP request; `url` goes out exactly as given (a presigned URL must not be
        re-quoted). Any status is an answer: only an unreachable peer raises."""

    async def websocket(self, url: str) -> WebSocket:
        """Open a WebSocket to `url` (ws:// or wss://)."""

    async def aclose(self) -> None:
        """Release what the transport owns (not what it was given)."""


_AiohttpSocket = aiohttp.ClientWebSocketResponse[Literal[False]]
_CLOSED = frozenset({
    aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR,
})


class _AiohttpWebSocket:
    __slots__ = ("_ws",)

    def __init__(self, ws: _AiohttpSocket) -> None:
        self._ws = ws

    @property
    def close_code(self) -> int | None:
        return self._ws.close_code

    @property
    def closed(self) -> bool:
        return self._ws.closed

    async def send(self, data: bytes) -> None:
        try:
            await self._ws.send_frame(data, aiohttp.WSMsgType.TEXT)
        except aiohttp.ClientError as exc:
            raise ConnectionError(str(exc)) from exc

    async def receive(self) -> bytes | None:
        while True:
            msg = await self._ws.receive()
            if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                data: bytes = msg.data  # bytes even for TEXT: the socket is opened with decode_text=False
                return data
            if msg.type in _CLOSED:
                return None

    async def close(self) -> None:
        try:
            await self._ws.close()
        except aiohttp.ClientError as exc:
            raise ConnectionError(str(exc)) from exc


class AiohttpTransport:
    """The default transport: aiohttp's client. Given a session, it shares that session (its
    connection pool and limits, as a load generator with thousands of clients wants) and leaves
    it open; otherwise it makes one on first use and closes it in `aclose`."""

    def __init__(self, session: aiohttp.ClientSession | None = None) -> None:
        self._session = session
        self._owns_session = session is None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:  # made here, not in __init__: aiohttp wants a running loop
            self._session = self._new_session()
        return self._session

    def _new_session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession()

    async def request(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]
    ) -> HttpResponse:
        # A file object, so aiohttp streams a large upload instead of writing it in one go.
        data = io.BytesIO(body) if body is not None else None
        try:
            async with self._client().request(method, yarl.URL(url, encoded=True), data=data,
                                              headers=headers) as resp:
                return HttpResponse(resp.status, resp.headers, await resp.read())
        except aiohttp.ClientError as exc:
            raise ConnectionError(f"{method} {url}: {exc}") from exc

    async def websocket(self, url: str) -> WebSocket:
        try:
            # No compression: it costs ~100 KB per connection on the server; no size limit:
            # the server bounds its frames.
            ws = await self._client().ws_connect(url, compress=0, max_msg_size=0, decode_text=False)
        except aiohttp.ClientError as exc:
            raise ConnectionError(str(exc)) from exc
        return _AiohttpWebSocket(ws)

    async def aclose(self) -> None:
        if self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()

    async def __aenter__(self) -> AiohttpTransport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class AppTransport(AiohttpTransport):
    """An aiohttp app run in this process and reached over a Unix socket of its own: no port,
    no subprocess, and every URL, whatever its host, reaches the app (as with httpx's
    ASGITransport). `async with AppTransport(app) as t:` starts the app (its startup and
    cleanup contexts run) and stops it on the way out."""

    def __init__(self, app: web.Application) -> None:
        super().__init__()
        self._runner = web.AppRunner(app, handle_signals=False)
        self._dir: Path | None = None

    def _new_session(self) -> aiohttp.ClientSession:
        if self._dir is None:
            raise RuntimeError("AppTransport is not started: use `async with AppTransport(app)`")
        return aiohttp.ClientSession(connector=aiohttp.UnixConnector(str(self._dir / "app.sock")))

    async def start(self) -> None:
        # A short path of its own: a Unix socket's path is limited to ~100 bytes.
        self._dir = Path(tempfile.mkdtemp(prefix="parley-sdk-"))
        await self._runner.setup()
        await web.UnixSite(self._runner, str(self._dir / "app.sock")).start()

    async def aclose(self) -> None:
        await super().aclose()
        await self._runner.cleanup()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    async def __aenter__(self) -> AppTransport:
        await self.start()
        return self
