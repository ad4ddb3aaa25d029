"""A small HTTP/2 server over TLS for the stand-ins: it assembles each request (headers and
body) and writes the answer a handler gives, or leaves the stream open when the handler gives
none (a server that never answers)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar, cast

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import ConnectionTerminated, DataReceived, RequestReceived, StreamEnded, StreamReset
from h2.settings import SettingCodes

from tests.push_standins.script import Script


@dataclass(frozen=True)
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""


#: (request headers, request body) -> the response, or None to never answer.
Handler = Callable[[dict[str, str], bytes], Response | None]


class H2Server:
    def __init__(self, tls: ssl.SSLContext, handler: Handler, *, max_streams: int) -> None:
        self.tls = tls
        self.handler = handler
        self.max_streams = max_streams
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._open: set[_Connection] = set()

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), "127.0.0.1", 0, ssl=self.tls, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        for connection in list(self._open):
            connection.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


class _Received(Protocol):
    status: int


R = TypeVar("R", bound=_Received)


class H2Standin(Generic[R]):
    """What both stand-ins share: an HTTP/2 server answering with `answer`, a script of
    answers per token, and every request answered so far."""

    def __init__(self, tls: ssl.SSLContext, *, max_streams: int) -> None:
        self.script = Script()
        self.received: list[R] = []
        self._server = H2Server(tls, self.answer, max_streams=max_streams)

    def answer(self, headers: dict[str, str], body: bytes) -> Response | None:
        raise NotImplementedError

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def connections(self) -> int:
        return self._server.connections

    @property
    def accepted(self) -> list[R]:
        return [r for r in self.received if r.status == 200]


class _Connection(asyncio.Protocol):
    """One client connection: HTTP/2 frames in, a response per completed request out."""

    def __init__(self, server: H2Server) -> None:
        self.server = server
        self.h2 = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        self.transport: asyncio.Transport | None = None
        self.requests: dict[int, tuple[dict[str, str], bytearray]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.server.connections += 1
        self.server._open.add(self)
        self.h2.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: self.server.max_streams})
        self.h2.initiate_connection()
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._open.discard(self)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        for event in self.h2.receive_data(data):
            if isinstance(event, RequestReceived):
                # header_encoding="utf-8" makes h2 hand over str, not bytes
                self.requests[event.stream_id] = ({str(k): str(v) for k, v in event.headers}, bytearray())
            elif isinstance(event, DataReceived):
                self.requests[event.stream_id][1].extend(event.data)
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, StreamEnded):
                self._respond(event.stream_id, *self.requests.pop(event.stream_id))
            elif isinstance(event, StreamReset):
                self.requests.pop(event.stream_id, None)
            elif isinstance(event, ConnectionTerminated):
                self.close()
        self._flush()

    def _respond(self, stream_id: int, headers: dict[str, str], body: bytearray) -> None:
        response = self.server.handler(headers, bytes(body))
        if response is None:
            return  # the stream stays open, unanswered
        head = [(":status", str(response.status)), *response.headers]
        if response.body:
            self.h2.send_headers(stream_id, head + [("content-length", str(len(response.body)))])
            self.h2.send_data(stream_id, response.body, end_stream=True)
        else:
            self.h2.send_headers(stream_id, head, end_stream=True)

    def _flush(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(self.h2.data_to_send())
