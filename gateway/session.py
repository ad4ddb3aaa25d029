"""One client session: its bounded send queue and its requests awaiting replies.

Frames are written straight to the socket's transport while it keeps up: an event's WebSocket
frame is built once (`wire_frame`) and the same bytes go to every recipient, with no task and no
future per recipient. The frames pushed to a session during one pass of the event loop (a burst
of events from the bus, a reply among them) leave in one write at the end of that pass: the
system call per write, not the bytes, is the cost of fan-out. Only a session whose transport
backs up gets a queue and a writer task that waits for the socket to drain; the queue is
bounded in frames and in bytes, and a reader too slow to keep up gets `resync` and close 4008
instead of growing the server without limit. A session told to close whose peer does not take
the close (it stopped reading) is cut by the hub's sweep, which drops what it still holds.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections import deque

from aiohttp import WSMsgType, web

from parley import metrics
from parley.auth import Claims
from parley.closecodes import CloseCode
from parley.events import Resync, encode_event
from parley.limits import SEND_QUEUE_MAX_BYTES

RESYNC = encode_event(Resync())
#: A session's typing times are pruned once it holds this many conversations.
TYPING_PRUNE_AT = 16
#: Write directly while the transport holds less than this; above it, queue behind the writer
#: (aiohttp pauses writing at 64 KiB, so the writer's drain and this bound agree).
DIRECT_WRITE_MAX = 64 * 1024


def wire_frame(payload: bytes) -> bytes:
    """A complete server-to-client WebSocket text frame (FIN, unmasked) around `payload`."""
    n = len(payload)
    if n < 126:
        return struct.pack("!BB", 0x81, n) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


def unwrap(wire: bytes) -> bytes:
    """The payload of a `wire_frame`."""
    n = wire[1]
    return wire[2 if n < 126 else 4 if n == 126 else 10:]


class Session:
    __slots__ = ("id", "user", "name", "device", "ws", "_transport", "_queue", "_max_queue", "inflight",
                 "last_seen", "_settled", "_close", "_writer", "role", "guest", "_pending", "_queued_bytes",
                 "_max_queue_bytes", "_closing_at", "_typed",
                 "claims")

    def __init__(self, session_id: str, user: str, device: str | None, ws: web.WebSocketResponse,
                 transport: asyncio.Transport, max_queue: int, *, max_queue_bytes: int = SEND_QUEUE_MAX_BYTES,
                 role: str | None = None, guest: bool = False, claims: Claims | None = None,
                 name: str = "") -> None:
        self.id = session_id
        self.user = user
        #: The user's display name (its username): what others see of it in a call.
        self.name = name
        self.device = device
        #: From the token: the instance role ("admin", "moderator" or None) and the guest flag.
        self.role = role
        self.guest = guest
        #: The claims of the token the session stands on (replaced by `auth`): the hub ends the
        #: session when they expire or a revocation names them. None: no token (tests).
        self.claims = claims
        self.ws = ws
        self._transport = transport
        #: Wire frames pushed during this pass of the event loop, written together at its end.
        self._pending: list[bytes] = []
        #: Payloads waiting for the writer; empty while the socket keeps up.
        self._queue: deque[bytes] = deque()
        self._max_queue = max_queue
        #: The payload bytes in `_queue`, against `_max_queue_bytes`.
        self._queued_bytes = 0
        self._max_queue_bytes = max_queue_bytes
        #: rid -> monotonic deadline of each request sent to chat_core and not yet answered.
        self.inflight: dict[str, float] = {}
        self.last_seen = time.monotonic()
        self._settled: asyncio.Future[None] | None = None
        self._close: tuple[int, bytes] | None = None
        #: Monotonic time a close was asked for (None: not asked, or the socket closes elsewhere).
        self._closing_at: float | None = None
        self._writer: asyncio.Task[None] | None = None
        #: conv -> monotonic time of the last typing signal that fanned out; made on first use.
        self._typed: dict[str, float] | None = None

    # ---- outgoing -------------------------------------------------------------------------

    def push(self, payload: bytes, wire: bytes | None = None) -> None:
        """Send a frame (`wire` is `wire_frame(payload)` when the caller already built it) at the
        end of this pass of the event loop, in order; never blocks. Overflow turns into `resync`
        + close 4008."""
        if self._close is not None:
            return
        pending = self._pending
        if not pending:
            asyncio.get_running_loop().call_soon(self._flush)
        pending.append(wire if wire is not None else wire_frame(payload))

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        if not self._queue:
            transport = self._transport
            room = DIRECT_WRITE_MAX - transport.get_write_buffer_size()
            if room > 0 and not transport.is_closing():
                # Directly only what fits under the bound; the rest waits its turn in the queue.
                fit, size = 0, 0
                while fit < len(pending) and size + len(pending[fit]) <= room:
                    size += len(pending[fit])
                    fit += 1
                fit = max(fit, 1)
                transport.write(pending[0] if fit == 1 else b"".join(pending[:fit]))
                pending = pending[fit:]
        for wire in pending:
            if self._close is not None:  # overflowed: the client resyncs instead
                return
            self._enqueue(unwrap(wire))

    def _enqueue(self, payload: bytes) -> None:
        queue = self._queue
        # One frame larger than the byte bound still goes alone (a big sync reply); more do not.
        if len(queue) >= self._max_queue or (queue and self._queued_bytes + len(payload) > self._max_queue_bytes):
            metrics.QUEUE_OVERFLOWS.inc()
            queue.clear()
            queue.append(RESYNC)
            self._queued_bytes = len(RESYNC)
            self.close_after_flush(CloseCode.POLICY, b"too slow: call sync after reconnecting")
            return
        queue.append(payload)
        self._queued_bytes += len(payload)
        self._start_writer()

    @property
    def queued_bytes(self) -> int:
        return self._queued_bytes

    @property
    def closing(self) -> bool:
        return self._close is not None

    def close_after_flush(self, code: int, reason: bytes) -> None:
        """Send what is pending and queued, then close with `code`."""
        if self._close is None:
            self._flush()
            if self._close is not None:  # the flush overflowed the queue: 4008 it is
                return
            self._close = (code, reason)
            self._closing_at = time.monotonic()
            self._start_writer()

    def cut_if_stuck(self, now: float, grace_s: float) -> bool:
        """Abort the connection of a session told to close more than `grace_s` ago: its peer
        stopped reading, so neither the queue nor the close frame can leave, and the socket would
        hold the session (and the memory of its buffers) for as long as the peer likes. The
        reader then sees the connection end and the session is removed as after any close."""
        if self._closing_at is None or now - self._closing_at < grace_s:
            return False
        self._closing_at = None
        self._queue.clear()
        self._queued_bytes = 0
        self._transport.abort()
        return True

    def _start_writer(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_queued())

    async def _write_queued(self) -> None:
        """Write the queue through aiohttp, which waits for the socket to drain; then close if
        asked. Frames pushed meanwhile join the queue (the direct path waits for it to empty)."""
        queue, ws = self._queue, self.ws
        try:
            while queue:
                payload = queue.popleft()
                self._queued_bytes -= len(payload)
                # send_frame hands the bytes to the transport before it waits for the drain, so
                # anything written after this (queued or direct) follows it on the wire.
                await ws.send_frame(payload, WSMsgType.TEXT)
            if self._close is not None:
                await ws.close(code=self._close[0], message=self._close[1])
        except (ConnectionError, RuntimeError):
            queue.clear()  # the peer went away; the reader notices and cleans up
            self._queued_bytes = 0

    def discard(self) -> None:
        """Write nothing more: the socket is being closed outside this session (frames written
        after a WebSocket close frame would break the protocol)."""
        self._pending.clear()
        self._queue.clear()
        self._queued_bytes = 0
        if self._close is None:
            self._close = (CloseCode.GOING_AWAY, b"")

    async def stop(self) -> None:
        self.discard()
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
            try:
                await self._writer
            except asyncio.CancelledError:
                pass

    # ---- typing ---------------------------------------------------------------------------

    def typing_due(self, conv: str, now: float, interval_s: float) -> bool:
        """Whether a typing signal for `conv` fans out now (and from now on counts as the last
        one): at most one per conversation per `interval_s`."""
        typed = self._typed
        if typed is None:
            typed = self._typed = {}
        last = typed.get(conv)
        if last is not None and now - last < interval_s:
            return False
        if len(typed) >= TYPING_PRUNE_AT:  # conversations typed in long ago are as good as absent
            self._typed = typed = {c: t for c, t in typed.items() if now - t < interval_s}
        typed[conv] = now
        return True

    def typing_refused(self, conv: str) -> None:
        """The signal for `conv` was refused: the next one is checked again, not dropped."""
        if self._typed is not None:
            self._typed.pop(conv, None)

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
