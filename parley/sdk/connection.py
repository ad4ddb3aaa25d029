"""One WebSocket of the protocol: opened through a transport and greeted with `hello`, then
frames out and frames in until it drops. What outlives a socket (requests awaiting replies,
reconnecting, resending) is the session's (`parley.sdk.session`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from parley.closecodes import CloseCode
from parley.errors import Unauthorized, Unavailable
from parley.sdk.wire import Frame, decode_frame, encode_frame, error_from_frame
from parley.sdk.transport import Transport, WebSocket

log = logging.getLogger(__name__)

_HELLO_TIMEOUT_S = 10.0


class Connection:
    """An open, greeted WebSocket, read and written as frames. Writes raise ConnectionError
    once it has dropped; `socket` tells its state and closes it."""

    __slots__ = ("socket", "hello")

    def __init__(self, socket: WebSocket, hello: Frame) -> None:
        self.socket = socket
        #: The `ok` reply to hello (user_id, heartbeat_s, ...).
        self.hello = hello

    async def write(self, frame: Frame) -> None:
        await self.socket.send(encode_frame(frame))

    async def write_raw(self, data: bytes) -> None:
        """One text frame as given, valid or not."""
        await self.socket.send(data)

    async def read(self) -> Frame | None:
        """The next frame; None once the socket has closed."""
        while True:
            data = await self.socket.receive()
            if data is None:
                return None
            frame = decode_frame(data)
            if frame is not None:
                return frame
            log.debug("parley sdk: ignoring a frame that is not a JSON object")


async def open_connection(
    transport: Transport, url: str, hello: Frame, on_early_frame: Callable[[Frame], None]
) -> Connection:
    """Connect and complete `hello` (a frame with its rid). Frames that arrive before its reply
    go to `on_early_frame`. Raises Unavailable (no connection, or it dropped), Unauthorized (a
    bad token closes the socket) or the error the server answered hello with."""
    try:
        ws = await transport.websocket(url)
    except ConnectionError as exc:
        raise Unavailable(f"cannot connect: {exc}") from exc
    try:
        async with asyncio.timeout(_HELLO_TIMEOUT_S):
            reply = await _greet(ws, hello, on_early_frame)
    except BaseException:
        with contextlib.suppress(ConnectionError):
            await ws.close()
        raise
    return Connection(ws, reply)


async def _greet(ws: WebSocket, hello: Frame, on_early_frame: Callable[[Frame], None]) -> Frame:
    try:
        await ws.send(encode_frame(hello))
    except ConnectionError as exc:
        raise Unavailable(f"connection lost: {exc}") from exc
    # Read inline, before any reader task exists, so nothing can interleave with hello.
    while True:
        data = await ws.receive()
        if data is None:
            code = ws.close_code
            refused = Unauthorized if code == CloseCode.BAD_TOKEN else Unavailable
            raise refused(f"socket closed during hello (code {code})")
        reply = decode_frame(data)
        if reply is None:
            continue
        if reply.get("rid") != hello["rid"]:
            on_early_frame(reply)  # nothing should come first; keep it if it does
            continue
        if reply.get("op") != "ok":
            raise error_from_frame(reply)
        return reply
