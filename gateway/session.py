"""One client session: its bounded send queue, its writer, and its requests awaiting replies.

Per-session state stays small (slots, one writer task besides aiohttp's reader) because a
gateway holds tens of thousands of them. The queue is bounded: a reader too slow to keep up
gets `resync` and close 4008 instead of growing the server without limit.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from aiohttp import WSMsgType, web

from parley.closecodes import CloseCode
from parley.frames import event_frame

RESYNC = event_frame("resync")


class Session:
    __slots__ = ("id", "user", "device", "ws", "_queue", "_max_queue", "inflight", "last_seen",
                 "_wake", "_settled", "_close", "_writer")

    def __init__(self, session_id: str, user: str, device: str | None, ws: web.WebSocketResponse,
                 max_queue: int) -> None:
        self.id = session_id
        self.user = user
        self.device = device
        self.ws = ws
        self._queue: deque[bytes] = deque()
        self._max_queue = max_queue
        #: rid -> monotonic deadline of each request sent to chat_core and not yet answered.
        self.inflight: dict[str, float] = {}
        self.last_seen = time.monotonic()
        self._wake: asyncio.Future[None] | None = None
        self._settled: asyncio.Future[None] | None = None
        self._close: tuple[int, bytes] | None = None
        self._writer: asyncio.Task[None] | None = None

    # ---- outgoing -------------------------------------------------------------------------

    def start(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    def push(self, frame: bytes) -> None:
        """Queue a frame; never blocks. Overflow turns into `resync` + close 4008."""
        if self._close is not None:
            return
        if len(self._queue) >= self._max_queue:
            self._queue.clear()
            self._queue.append(RESYNC)
            self.close_after_flush(CloseCode.POLICY, b"too slow: call sync after reconnecting")
            return
        self._queue.append(frame)
        self._wake_writer()

    def close_after_flush(self, code: int, reason: bytes) -> None:
        """Send what is queued, then close with `code`."""
        if self._close is None:
            self._close = (code, reason)
            self._wake_writer()

    def _wake_writer(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def _write_loop(self) -> None:
        queue, ws, loop = self._queue, self.ws, asyncio.get_running_loop()
        try:
            while True:
                while queue:
                    await ws.send_frame(queue.popleft(), WSMsgType.TEXT)
                if self._close is not None:
                    await ws.close(code=self._close[0], message=self._close[1])
                    return
                self._wake = loop.create_future()
                await self._wake
        except (ConnectionError, RuntimeError):
            pass  # the peer went away; the reader notices and cleans up

    async def stop(self) -> None:
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
            try:
                await self._writer
            except asyncio.CancelledError:
                pass

    # ---- request bookkeeping --------------------------------------------------------------

    def answered(self, rid: str) -> None:
        if self.inflight.pop(rid, None) is not None and not self.inflight:
            settled = self._settled
            if settled is not None and not settled.done():
                settled.set_result(None)

    async def settled(self) -> None:
        """Wait until every earlier write of this session is answered: requests of a session are
        processed in order, so a read sees the writes sent before it."""
        if self.inflight:
            self._settled = asyncio.get_running_loop().create_future()
            await self._settled
