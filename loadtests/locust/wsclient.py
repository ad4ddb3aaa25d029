"""One protocol session for a Locust user, on gevent and websocket-client (no asyncio): hello,
requests by rid, heartbeats, a `sync` on a gap or `resync` (one at a time, as the SDK's), and,
when the socket drops (or the first connect fails),
reconnecting with jittered backoff, re-sending unacknowledged sends (same cmid: the server
de-duplicates) and catching up with `sync`. Frames are built and read by `parley.sdk.wire`, the
watermark and de-duplication are `parley.sdk.catchup`'s: the asyncio SDK's own code.

What happens is told to `record(name, ms, error)`, which the locustfile turns into Locust
request events.
"""

from __future__ import annotations

import itertools
import random
import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import gevent
import websocket
from gevent.event import AsyncResult, Event

from parley.closecodes import CloseCode
from parley.errors import ParleyError
from parley.sdk.catchup import Catchup, sync_replay
from parley.sdk.wire import (
    Frame, decode_frame, encode_frame, error_from_frame, hello_frame, reply_rid, send_frame, sync_frame, ws_url,
)

#: (name, response time in ms, the failure or None): one Locust request event.
Record = Callable[[str, float, Exception | None], None]
#: A message.new event the session delivers (once each, live or from a sync).
OnMessage = Callable[[Frame], None]

BACKOFF_START_S = 0.2
BACKOFF_CAP_S = 5.0
HELLO_TIMEOUT_S = 15.0
#: Closes that are part of running a cluster (a drain tells clients to reconnect), not failures.
EXPECTED_CLOSES = frozenset({CloseCode.GOING_AWAY})


class Unexpected(Exception):
    """A close or an error frame the test did not cause: a Locust failure."""


class Dropped(Unexpected):
    """A request (not a send) lost with its socket; after an expected close (a drain) it is
    no failure: the session reconnects and the next ping or sync goes out then."""

    def __init__(self, code: int | None) -> None:
        super().__init__(f"connection lost (code {code})")
        self.code = code

    @property
    def expected(self) -> bool:
        return self.code in EXPECTED_CLOSES


@dataclass
class _Pending:
    frame: Frame
    result: AsyncResult
    #: A send survives a reconnect (written again, same cmid); other requests fail with the socket.
    resend: bool
    #: Written on some socket: after a drop, the reconnect writes it again; one never written
    #: yet is written by its own caller once the session is back (never both: the server
    #: refuses a rid that is still in flight).
    written: bool = False


class ProtocolSession:
    def __init__(self, base_url: str, token: str, *, record: Record, on_message: OnMessage,
                 source_ip: str | None = None, request_timeout_s: float = 10.0) -> None:
        self._url = ws_url(base_url)
        self._token = token
        self._record = record
        self._on_message = on_message
        self._source_ip = source_ip
        self._timeout_s = request_timeout_s
        self._rids = itertools.count(1)
        self._pending: dict[str, _Pending] = {}
        self._catchup = Catchup()
        self._ws: websocket.WebSocket | None = None
        self._online = Event()
        self._closing = False
        #: One sync at a time: a gap seen while one runs asks for one more after it, so a slow
        #: server is not sent a new sync per event (at 10,000 subscribers that melted it).
        self._syncing = False
        self._sync_wanted = False
        self._greenlets: list[gevent.Greenlet] = []
        self.user_id = ""
        self.heartbeat_s = 30.0
        self.reconnects = 0

    # ---- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Connect and say hello (each attempt recorded as `connect`; a failed one is retried
        with the reconnect's backoff, as an app does), then read, beat and catch up in the
        background."""
        for delay in _backoff():
            started = time.perf_counter()
            try:
                self._ws = self._open()
            except (OSError, websocket.WebSocketException, ParleyError) as exc:
                self._record("connect", _ms_since(started), exc)
                gevent.sleep(delay)
                continue
            self._record("connect", _ms_since(started), None)
            break
        self._online.set()
        self._greenlets = [gevent.spawn(self._read_loop), gevent.spawn(self._beat)]
        self._want_sync()  # what was sent before this session (none on a fresh account)

    def close(self) -> None:
        self._closing = True
        ws = self._ws
        if ws is not None:
            try:
                ws.close(timeout=1)
            except (OSError, websocket.WebSocketException):
                pass  # gone already: nobody to say goodbye to
        gevent.killall(self._greenlets, block=False)
        self._online.set()  # wake waiters: they fail on `_closing`

    # ---- requests -------------------------------------------------------------------------

    def request(self, frame: Frame, *, resend: bool = False) -> Frame:
        """Write `frame` (waiting for a reconnect in progress) and return its `ok`; raises the
        ParleyError of an `error`, or gevent.Timeout."""
        pending = _Pending(frame, AsyncResult(), resend)
        rid: str = frame["rid"]
        self._pending[rid] = pending
        try:
            with gevent.Timeout(self._timeout_s):
                self._write_when_online(pending)
                reply: Frame = pending.result.get()
        finally:
            self._pending.pop(rid, None)
        return reply

    def send(self, conv: str, text: str) -> Frame:
        return self.request(send_frame(self.next_rid(), conv, text), resend=True)

    def next_rid(self) -> str:
        return str(next(self._rids))

    def _write_when_online(self, pending: _Pending) -> None:
        while True:
            self._online.wait()
            if self._closing:
                raise Unexpected("session closed")
            ws = self._ws
            try:
                if ws is not None:
                    ws.send(encode_frame(pending.frame))
                    pending.written = True
                    return
            except (OSError, websocket.WebSocketException):
                pass  # dropped under us: the reader reconnects, and we write again
            if self._ws is ws:  # (not if the reader has already put a new socket in its place)
                self._online.clear()

    # ---- reading --------------------------------------------------------------------------

    def _read_loop(self) -> None:
        while not self._closing:
            ws = self._ws
            assert ws is not None
            code = self._read_until_closed(ws)
            if self._closing:
                return
            dropped = time.perf_counter()
            self._online.clear()
            if code not in EXPECTED_CLOSES:
                self._record("unexpected close", 0.0, Unexpected(f"socket closed (code {code})"))
            self._fail_unsendable(code)
            self._ws = self._reconnect()
            self.reconnects += 1
            self._record("reconnect", _ms_since(dropped), None)
            self._online.set()
            self._resend()
            self._want_sync()

    def _read_until_closed(self, ws: websocket.WebSocket) -> int | None:
        """Handle frames until the socket closes; the close code (None when it just dropped)."""
        while True:
            try:
                opcode, frame = ws.recv_data_frame()
            except (OSError, websocket.WebSocketException):
                return None
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                data = frame.data or b""
                return int(struct.unpack("!H", data[:2])[0]) if len(data) >= 2 else None
            decoded = decode_frame(frame.data)
            if decoded is not None:
                self._on_frame(decoded)

    def _on_frame(self, frame: Frame) -> None:
        rid = reply_rid(frame)
        if rid is not None:
            pending = self._pending.get(rid)
            if pending is not None:
                if frame.get("op") == "ok":
                    pending.result.set(frame)
                else:
                    pending.result.set_exception(error_from_frame(frame))
                return
        op, kind = frame.get("op"), frame.get("type")
        if op == "error":  # an error nobody asked for
            self._record("error frame", 0.0, error_from_frame(frame))
        elif op == "event" and kind == "resync":
            self._want_sync()
        elif op == "event" and kind == "message.new":
            self._deliver(frame)

    def _deliver(self, event: Frame) -> None:
        if not self._catchup.admit(event):
            return  # had it already
        message = event["message"]
        conv, seq = message.get("conv"), message.get("seq")
        if isinstance(conv, str) and isinstance(seq, int) and seq > self._catchup.last_seq.get(conv, 0):
            self._want_sync()  # a hole below this one: ask for what is missing
        self._on_message(event)

    # ---- catching up ----------------------------------------------------------------------

    def _want_sync(self) -> None:
        if self._syncing:
            self._sync_wanted = True
        else:
            self._syncing = True
            gevent.spawn(self._sync_while_wanted)

    def _sync_while_wanted(self) -> None:
        try:
            while True:
                self._sync_wanted = False
                if not self._sync() or not self._sync_wanted:
                    return  # a failed sync is not retried at once: the next gap asks again
        finally:
            self._syncing = False

    def _sync(self) -> bool:
        """`sync` from the watermark; its messages are delivered like live ones (once each).
        Whether it succeeded."""
        started = time.perf_counter()
        try:
            while True:
                reply = self.request(sync_frame(self.next_rid(), self._catchup.last_seq))
                self._catchup.note_sync(reply)
                events, cut = sync_replay(reply)
                for event in events:
                    if self._catchup.admit(event):
                        self._on_message(event)
                if not cut:
                    break
        except (ParleyError, Unexpected, gevent.Timeout) as exc:
            if self._counts(exc):
                self._record("sync", _ms_since(started), exc)
            return False
        self._record("sync", _ms_since(started), None)
        return True

    # ---- heartbeat ------------------------------------------------------------------------

    def _beat(self) -> None:
        """A ping every heartbeat_s (the server closes an idle session, 4002), recorded."""
        while not self._closing:
            gevent.sleep(self.heartbeat_s)
            started = time.perf_counter()
            try:
                self.request({"op": "ping", "rid": self.next_rid()})
            except (ParleyError, Unexpected, gevent.Timeout) as exc:
                if self._counts(exc):
                    self._record("ping", _ms_since(started), exc)
                continue
            self._record("ping", _ms_since(started), None)

    def _counts(self, exc: BaseException) -> bool:
        """Whether a failed ping or sync is a failure: not when we are closing, nor when a
        drain (4009) took its socket."""
        return not self._closing and not (isinstance(exc, Dropped) and exc.expected)

    # ---- connecting -----------------------------------------------------------------------

    def _open(self) -> websocket.WebSocket:
        """A new socket, greeted: sets user_id and heartbeat_s. Raises on any failure."""
        ws = websocket.WebSocket(skip_utf8_validation=True, enable_multithread=True)
        options: dict[str, object] = {"timeout": HELLO_TIMEOUT_S}
        if self._source_ip is not None:
            # Our own socket, bound to this worker's source address: each address in
            # 127.0.0.0/8 has its own ~28k ephemeral ports towards the server.
            parts = urlsplit(self._url)
            options["socket"] = socket.create_connection(
                (parts.hostname or "127.0.0.1", parts.port or 80), HELLO_TIMEOUT_S, (self._source_ip, 0))
        ws.connect(self._url, **options)
        try:
            hello = hello_frame(self.next_rid(), self._token)
            ws.send(encode_frame(hello))
            while True:
                reply = decode_frame(ws.recv())
                if reply is not None and reply.get("rid") == hello["rid"]:
                    break
            if reply.get("op") != "ok":
                raise error_from_frame(reply)
            ws.settimeout(None)  # from now on the reader waits as long as it takes
        except BaseException:
            ws.close(timeout=1)
            raise
        self.user_id = str(reply.get("user_id", ""))
        self.heartbeat_s = float(reply.get("heartbeat_s") or self.heartbeat_s)
        return ws

    def _reconnect(self) -> websocket.WebSocket:
        """Until a hello succeeds: jittered exponential backoff, so a crowd dropped at once
        (a gateway killed) does not come back at once."""
        delays = _backoff()
        while True:
            gevent.sleep(next(delays))
            try:
                return self._open()
            except (OSError, websocket.WebSocketException, ParleyError):
                pass

    def _fail_unsendable(self, code: int | None) -> None:
        """Requests other than sends die with their socket; sends wait to be written again."""
        for pending in list(self._pending.values()):
            if not pending.resend and not pending.result.ready():
                pending.result.set_exception(Dropped(code))

    def _resend(self) -> None:
        ws = self._ws
        for pending in list(self._pending.values()):
            if pending.resend and pending.written and not pending.result.ready() and ws is not None:
                try:
                    ws.send(encode_frame(pending.frame))
                except (OSError, websocket.WebSocketException):
                    return  # dropped again: the reader reconnects and resends once more


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _backoff() -> Iterator[float]:
    """Jittered exponential delays, doubling from BACKOFF_START_S up to BACKOFF_CAP_S, forever."""
    delay = BACKOFF_START_S
    while True:
        yield random.uniform(delay / 2, delay)
        delay = min(delay * 2, BACKOFF_CAP_S)
