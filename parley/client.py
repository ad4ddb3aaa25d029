"""The asyncio client SDK for the Parley v1 protocol: REST accounts plus one WebSocket session.

Tests, the benchmark and bots all speak the protocol through this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import logging
import random
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
import msgspec
import yarl

from parley.closecodes import CloseCode

log = logging.getLogger(__name__)

Frame = dict[str, Any]
EventHook = Callable[[Frame], None]
_WebSocket = aiohttp.ClientWebSocketResponse[Literal[False]]

_HELLO_TIMEOUT_S = 10.0
_DEFAULT_HEARTBEAT_S = 30.0
_BACKOFF_START_S = 0.1
_BACKOFF_CAP_S = 5.0
# Reconnecting cannot help after these: the token is bad, or we sent a frame the server
# refuses, which a re-sent pending send would only repeat.
_FINAL_CLOSE_CODES = frozenset({CloseCode.BAD_TOKEN, CloseCode.TOO_BIG})
# A hello refused with these will be refused again, so the reconnect loop gives up.
_FINAL_HELLO_ERRORS = frozenset({"unauthorized", "forbidden"})
_DISCONNECTS = (ConnectionError, aiohttp.ClientError)


class ErrorReply(Exception):
    """An `error` reply (or REST error body), or `unavailable` when the client has no session."""

    def __init__(
        self,
        code: str,
        message: str = "",
        *,
        retry_after_ms: int | None = None,
        rid: str | None = None,
        status: int | None = None,
        rule: str | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.retry_after_ms = retry_after_ms
        self.rid = rid
        self.status = status  # the HTTP status, for REST errors only
        self.rule = rule  # the policy rule behind a `forbidden` ("muted", "banned", ...)

    @classmethod
    def from_frame(cls, frame: Frame) -> ErrorReply:
        retry = frame.get("retry_after_ms")
        rid = frame.get("rid")
        rule = frame.get("rule")
        return cls(
            str(frame.get("code", "internal")),
            str(frame.get("message", "")),
            retry_after_ms=retry if isinstance(retry, int) else None,
            rid=rid if isinstance(rid, str) else None,
            rule=rule if isinstance(rule, str) else None,
        )


class _NotWritten(Exception):
    """A request's write failed on a dropped socket: the server never saw it, so it may be retried."""


@dataclass(frozen=True)
class Account:
    user_id: str
    token: str
    username: str


async def register(
    base_url: str, username: str, password: str, *, http: aiohttp.ClientSession | None = None
) -> Account:
    """POST /v1/auth/register; raises ErrorReply (e.g. `conflict`, status 409) on failure."""
    return await _auth(base_url, "/v1/auth/register", username, password, http)


async def login(
    base_url: str, username: str, password: str, *, http: aiohttp.ClientSession | None = None
) -> Account:
    """POST /v1/auth/login; raises ErrorReply (e.g. `unauthorized`, status 401) on failure."""
    return await _auth(base_url, "/v1/auth/login", username, password, http)


async def _auth(
    base_url: str, path: str, username: str, password: str, http: aiohttp.ClientSession | None
) -> Account:
    async with _http(http) as session:
        body = await _rest(session, "POST", base_url.rstrip("/") + path,
                           {"username": username, "password": password})
    # The server lowercases names; echo its spelling when it sends one.
    name = body.get("username")
    return Account(
        user_id=str(body["user_id"]),
        token=str(body["token"]),
        username=name if isinstance(name, str) else username.lower(),
    )


async def upload(
    base_url: str, token: str, conv: str, name: str, mime: str, data: bytes,
    *, http: aiohttp.ClientSession | None = None,
) -> Frame:
    """Attach a file: POST /v1/uploads, PUT the bytes to the URL it returns (with exactly the
    headers it returns), then complete the upload. Returns the attachment object, whose `id`
    goes into `send(..., attachments=[id])`. Raises ErrorReply (with `status`) on a refusal."""
    base = base_url.rstrip("/")
    async with _http(http) as session:
        slot = await _rest(session, "POST", base + "/v1/uploads",
                           {"conv": conv, "name": name, "mime": mime, "size": len(data)}, token)
        url = yarl.URL(slot["upload_url"], encoded=True)  # presigned: not one character may change
        # A file object, so aiohttp streams a large body instead of writing it in one go.
        async with session.request(slot["method"], url, data=io.BytesIO(data), headers=slot["headers"]) as resp:
            status, raw = resp.status, await resp.read()
        if status >= 300:
            raise _rest_error(status, _decode(raw), raw, None)
        return await _rest(session, "POST", f"{base}/v1/uploads/{slot['id']}/complete", None, token)


async def attachment(
    base_url: str, token: str, attachment_id: str, *, http: aiohttp.ClientSession | None = None
) -> Frame:
    """GET /v1/attachments/{id}: the attachment object with a short-lived download `url`."""
    async with _http(http) as session:
        return await _rest(session, "GET", f"{base_url.rstrip('/')}/v1/attachments/{attachment_id}", None, token)


@contextlib.asynccontextmanager
async def _http(http: aiohttp.ClientSession | None) -> AsyncIterator[aiohttp.ClientSession]:
    """The caller's HTTP session, or one of our own for this call only."""
    if http is not None:
        yield http
        return
    async with aiohttp.ClientSession() as session:
        yield session


async def _rest(
    session: aiohttp.ClientSession, method: str, url: str, body: Frame | None, token: str | None = None
) -> Frame:
    """One JSON REST call; a non-2xx answer raises ErrorReply from the error body."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with session.request(method, url, json=body, headers=headers) as resp:
        status, raw = resp.status, await resp.read()
        retry_after = resp.headers.get("Retry-After")
    decoded = _decode(raw)
    if status >= 300:
        raise _rest_error(status, decoded, raw, retry_after)
    if decoded is None:
        raise ErrorReply("internal", f"{method} {url} answered no JSON object", status=status)
    return decoded


def _rest_error(
    status: int, body: Frame | None, raw: bytes, retry_after: str | None
) -> ErrorReply:
    err = body.get("error") if body is not None else None
    if isinstance(err, dict):
        code, message = str(err.get("code", "internal")), str(err.get("message", ""))
    else:  # not our error body (a proxy, a crash): keep what we got for the test output
        code, message = "internal", raw[:200].decode("utf-8", "replace")
    retry_ms: int | None = None
    if retry_after is not None:
        with contextlib.suppress(ValueError):  # an HTTP-date: leave it to the caller
            retry_ms = int(float(retry_after) * 1000)
    return ErrorReply(code, message, retry_after_ms=retry_ms, status=status)


def _decode(data: bytes | str) -> Frame | None:
    """A JSON object, or None for anything else (the caller decides how bad that is)."""
    try:
        value = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return None
    return value if isinstance(value, dict) else None


def _ws_url(base_url: str) -> str:
    base = base_url.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[len("https://") :]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://") :]
    return base + "/v1/ws"


def _event_conv(event: Frame) -> str | None:
    """The conversation an event is about, wherever its type keeps the id."""
    conv = event.get("conv")
    if isinstance(conv, dict):  # conv.updated carries the whole object
        conv = conv.get("id")
    if conv is None:
        message = event.get("message")
        if isinstance(message, dict):
            conv = message.get("conv")
    return conv if isinstance(conv, str) else None


def _is_event(frame: Frame) -> bool:
    return frame.get("op") == "event"


class _SeenSeqs:
    """The (conv, seq) pairs already delivered; a contiguous run collapses into a floor so
    a long-lived client does not keep one entry per message."""

    def __init__(self) -> None:
        self._floor: dict[str, int] = {}
        self._above: dict[str, set[int]] = {}

    def add(self, conv: str, seq: int) -> bool:
        """Record the pair; False if it was already there."""
        floor = self._floor.get(conv, 0)
        above = self._above.setdefault(conv, set())
        if seq <= floor or seq in above:
            return False
        above.add(seq)
        while floor + 1 in above:
            floor += 1
            above.remove(floor)
        self._floor[conv] = floor
        return True


@dataclass
class _Pending:
    """A request awaiting its reply. `future` is None for the client's own recovery sync,
    whose reply the reader consumes itself."""

    frame: Frame
    future: asyncio.Future[Frame] | None
    # Sends survive a reconnect: the server de-duplicates them by cmid.
    resend: bool = False
    written: bool = False


@dataclass(frozen=True)
class _Options:
    ws_url: str
    token: str
    device_id: str | None
    reconnect: bool
    max_reconnect_attempts: int


class Client:
    """One WebSocket session; with `reconnect=True` it outlives dropped sockets."""

    hello: Frame
    user_id: str
    last_seq: dict[str, int]
    close_code: int | None
    reconnects: int
    #: When set, events go to this callback as they arrive instead of the buffer that
    #: `next_event`/`events()`/`drain_events` read (a load generator has no use for the buffer).
    on_event: EventHook | None

    def __init__(self, http: aiohttp.ClientSession, owns_http: bool, options: _Options) -> None:
        """Use `Client.connect`."""
        self._http = http
        self._owns_http = owns_http
        self._opts = options
        self.hello = {}
        self.user_id = ""
        self.last_seq = {}
        self.close_code = None
        self.reconnects = 0
        self.on_event = None
        self._rids = itertools.count(1)
        self._ws: _WebSocket | None = None
        self._pending: dict[str, _Pending] = {}
        # Frames nobody asked for (events, rid-less errors, late replies), in arrival order.
        self._inbox: deque[Frame] = deque()
        # Replaced on every arrival so any number of waiters wake without a Condition lock.
        self._arrival = asyncio.Event()
        self._seen = _SeenSeqs()
        # Set while a session is usable; also set once terminal so waiters wake and fail.
        self._ready = asyncio.Event()
        self._closed = asyncio.Event()
        self._closing = False  # close() was called: the coming socket close is ours
        self._terminal = False
        self._sync_wanted = False
        self._sync_rid: str | None = None
        self._reader: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None

    @classmethod
    async def connect(
        cls,
        base_url: str,
        token: str,
        *,
        device_id: str | None = None,
        reconnect: bool = False,
        http: aiohttp.ClientSession | None = None,
        heartbeat: bool = True,
        max_reconnect_attempts: int = 10,
        on_event: EventHook | None = None,
    ) -> Client:
        """Open a session and say hello; raises ErrorReply if the server refuses it.

        `on_event`: see the attribute of that name; it must not block.
        """
        opts = _Options(_ws_url(base_url), token, device_id, reconnect, max_reconnect_attempts)
        client = cls(http or aiohttp.ClientSession(), http is None, opts)
        client.on_event = on_event
        try:
            ws = await client._open()
        except BaseException:
            await client._release_http()
            raise
        client._ws = ws
        client._ready.set()
        client._reader = asyncio.create_task(client._run(ws), name="parley-client-reader")
        if heartbeat:
            client._heartbeat = asyncio.create_task(client._beat(), name="parley-client-heartbeat")
        return client

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- requests -------------------------------------------------------------------------

    async def request(self, op: str, timeout: float = 10.0, **fields: Any) -> Frame:
        """Send one request and return its `ok` frame; raises ErrorReply on `error`.

        Waits (within `timeout`) for a reconnect in progress rather than failing at once.
        """
        frame = {"op": op, "rid": self._next_rid(), **fields}
        return await self._call(frame, timeout, resend=False)

    async def send(
        self, conv: str, text: str, *, cmid: str | None = None, timeout: float = 10.0, **extra: Any
    ) -> Frame:
        """Send a message; with `reconnect=True` it is re-sent (same cmid) after a drop."""
        frame = {
            "op": "send",
            "rid": self._next_rid(),
            "conv": conv,
            "cmid": cmid or _new_cmid(),
            "text": text,
            **extra,
        }
        return await self._call(frame, timeout, resend=True)

    async def submit(self, op: str, **fields: Any) -> asyncio.Future[Frame]:
        """Write one request and return the future of its reply without waiting for it
        (pipelining, open-loop load). The future gets the `ok` frame or fails with ErrorReply,
        as `request` would; it has no timeout of its own. A `send` (given a cmid, or one is
        made) survives a reconnect like `send()`; other ops wait for a reconnect in progress.
        """
        if op == "send" and "cmid" not in fields:
            fields["cmid"] = _new_cmid()
        frame = {"op": op, "rid": self._next_rid(), **fields}
        return await self._begin(frame, resend=op == "send")

    async def ping(self) -> Frame:
        return await self.request("ping")

    async def sync(self) -> list[Frame]:
        """`sync` from what this client holds; returns `convs` (last_seq is updated on the way)."""
        reply = await self.request("sync", since=dict(self.last_seq))
        convs = reply.get("convs")
        return list(convs) if isinstance(convs, list) else []

    async def _call(self, frame: Frame, timeout: float, *, resend: bool) -> Frame:
        rid: str = frame["rid"]
        async with asyncio.timeout(timeout):
            future = await self._begin(frame, resend=resend)
            try:
                return await future
            finally:
                self._pending.pop(rid, None)

    async def _begin(self, frame: Frame, *, resend: bool) -> asyncio.Future[Frame]:
        """Write `frame` once a connection is ready; a write that fails on a dropped socket
        was never seen by the server, so it goes out on the next connection."""
        while True:
            if not resend:
                await self._ready.wait()
            try:
                return await self._start(frame, resend=resend)
            except _NotWritten:
                continue

    async def _start(self, frame: Frame, *, resend: bool) -> asyncio.Future[Frame]:
        """Make `frame` pending and write it; the reader settles the returned future."""
        rid: str = frame["rid"]
        # A send while reconnecting is only queued: the reconnect writes it, in order.
        if self._terminal or self._closing:
            raise ErrorReply("unavailable", "the client is closed", rid=rid)
        future: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        pending = _Pending(frame, future, resend)
        self._pending[rid] = pending
        try:
            ws = self._ws
            if self._ready.is_set() and ws is not None:
                pending.written = True
                try:
                    await _write(ws, frame)
                except _DISCONNECTS as exc:
                    # A reconnecting client re-sends sends; and if the reader already
                    # failed the future, awaiting it reports (and retrieves) that.
                    if self._opts.reconnect and not resend:
                        if self._ws is ws:  # the reader has not noticed the drop yet
                            self._ready.clear()
                        raise _NotWritten from exc
                    if not (resend and self._opts.reconnect) and not future.done():
                        lost = ErrorReply("unavailable", f"connection lost: {exc}", rid=rid)
                        raise lost from exc
        except BaseException:
            self._pending.pop(rid, None)
            raise
        return future

    def _next_rid(self) -> str:
        return str(next(self._rids))

    # ---- events and raw frames ------------------------------------------------------------

    async def next_event(
        self, type: str | None = None, *, timeout: float = 5.0, conv: str | None = None
    ) -> Frame:
        """The oldest buffered (or next arriving) event of that type/conv; others stay buffered.

        Raises TimeoutError (= asyncio.TimeoutError) if none comes in time, at once when the
        client is closed.
        """

        def match(frame: Frame) -> bool:
            return (
                frame.get("op") == "event"
                and (type is None or frame.get("type") == type)
                and (conv is None or _event_conv(frame) == conv)
            )

        found = await self._take(match, timeout)
        if found is None:
            raise TimeoutError(f"no {type or 'event'} event: the client is closed")
        return found

    def events(self) -> AsyncIterator[Frame]:
        """Every event in arrival order, until the client is closed."""
        return _EventStream(self)

    def drain_events(self) -> list[Frame]:
        """Take every buffered event without waiting (other frames stay for recv_raw)."""
        events = [f for f in self._inbox if _is_event(f)]
        if events:
            self._inbox = deque(f for f in self._inbox if not _is_event(f))
        return events

    async def send_raw(self, data: str | bytes) -> None:
        """Write one text frame as given, valid or not (for bad-input tests)."""
        ws = self._ws
        if ws is None or self._terminal:
            raise ErrorReply("unavailable", "the client is not connected")
        payload = data.encode() if isinstance(data, str) else data
        await ws.send_frame(payload, aiohttp.WSMsgType.TEXT)

    async def recv_raw(self, timeout: float = 5.0) -> Frame:
        """The next frame that is not a reply to a pending request (events included)."""
        found = await self._take(lambda _: True, timeout)
        if found is None:
            raise TimeoutError("no frame: the client is closed")
        return found

    async def _take(self, match: Callable[[Frame], bool], timeout: float | None) -> Frame | None:
        """Remove and return the first buffered frame matching; None once closed and none left."""
        async with asyncio.timeout(timeout):
            while True:
                arrival = self._arrival  # taken before the scan, so no arrival is missed
                for i, frame in enumerate(self._inbox):
                    if match(frame):
                        del self._inbox[i]
                        return frame
                if self._terminal:
                    return None
                await arrival.wait()

    def _wake(self) -> None:
        arrival, self._arrival = self._arrival, asyncio.Event()
        arrival.set()

    # ---- closing --------------------------------------------------------------------------

    async def wait_closed(self, timeout: float = 5.0) -> int | None:
        """Wait until the session is over for good; returns the server's close code."""
        async with asyncio.timeout(timeout):
            await self._closed.wait()
        return self.close_code

    async def close(self) -> None:
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        ws = self._ws
        if ws is not None and not ws.closed:
            # If the server is gone already there is nobody left to say goodbye to.
            with contextlib.suppress(TimeoutError, *_DISCONNECTS):
                async with asyncio.timeout(2.0):
                    await ws.close()
        # The reader may be sleeping in a reconnect backoff: stop it rather than wait.
        for task in (self._reader, self._heartbeat):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.wait({task})
        self._shutdown()
        await self._release_http()

    def _shutdown(self) -> None:
        """Make the client terminal: fail what is pending and wake every waiter."""
        if self._terminal:
            return
        self._terminal = True
        self._ws = None
        for pending in self._pending.values():
            if pending.future is not None and not pending.future.done():
                pending.future.set_exception(ErrorReply("unavailable", "the client is closed"))
        self._pending.clear()
        self._ready.set()
        self._closed.set()
        self._wake()
        if self._heartbeat is not None and self._heartbeat is not asyncio.current_task():
            self._heartbeat.cancel()

    async def _release_http(self) -> None:
        if self._owns_http and not self._http.closed:
            await self._http.close()

    # ---- connection -----------------------------------------------------------------------

    async def _open(self) -> _WebSocket:
        """Connect and complete hello; sets `hello`/`user_id`. Raises ErrorReply."""
        try:
            ws = await self._http.ws_connect(
                self._opts.ws_url, compress=0, max_msg_size=0, decode_text=False
            )
        except _DISCONNECTS as exc:
            raise ErrorReply("unavailable", f"cannot connect: {exc}") from exc
        try:
            async with asyncio.timeout(_HELLO_TIMEOUT_S):
                self.hello = await self._hello(ws)
        except BaseException:
            await ws.close()
            raise
        self.user_id = str(self.hello.get("user_id", ""))
        return ws

    async def _hello(self, ws: _WebSocket) -> Frame:
        rid = self._next_rid()
        frame: Frame = {"op": "hello", "rid": rid, "token": self._opts.token}
        if self._opts.device_id is not None:
            frame["device_id"] = self._opts.device_id
        try:
            await _write(ws, frame)
        except _DISCONNECTS as exc:
            raise ErrorReply("unavailable", f"connection lost: {exc}") from exc
        # Read inline, before the reader task exists, so nothing can interleave with hello.
        while True:
            msg = await ws.receive()
            if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                code = ws.close_code
                reason = "unauthorized" if code == CloseCode.BAD_TOKEN else "unavailable"
                raise ErrorReply(reason, f"socket closed during hello (code {code})")
            reply = _decode(msg.data)
            if reply is None:
                continue
            if reply.get("rid") != rid:
                self._on_frame(reply)  # nothing should come first; keep it if it does
                continue
            if reply.get("op") != "ok":
                raise ErrorReply.from_frame(reply)
            return reply

    async def _run(self, ws: _WebSocket) -> None:
        """The one reader task: reads until the socket drops, then reconnects or ends."""
        current: _WebSocket | None = ws
        try:
            while current is not None:
                await self._read(current)
                current = await self._recover(current)
        finally:
            self._shutdown()
        await self._release_http()  # not reached when close() cancels us; close() does it

    async def _read(self, ws: _WebSocket) -> None:
        while True:
            # The recovery sync is started here because only the reader may await its reply.
            if self._sync_wanted and self._sync_rid is None:
                await self._start_recovery_sync(ws)
            msg = await ws.receive()
            if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                frame = _decode(msg.data)
                if frame is None:
                    log.debug("parley client: ignoring a frame that is not a JSON object")
                    continue
                self._on_frame(frame)
            elif msg.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.ERROR,
            ):
                return

    async def _recover(self, dropped: _WebSocket) -> _WebSocket | None:
        """After a drop: fail what cannot survive it, then reconnect if allowed (else None)."""
        self._ws = None
        self._ready.clear()
        self._sync_rid = None
        if self._closing:
            return None
        self.close_code = dropped.close_code
        log.debug("parley client: socket closed with %s", self.close_code)
        self._fail_in_flight()
        if not self._opts.reconnect or self.close_code in _FINAL_CLOSE_CODES:
            return None
        ws = await self._reconnect()
        if ws is None:
            return None
        await self._resend_pending(ws)
        self._ws = ws
        self._ready.set()
        self.reconnects += 1
        self._sync_wanted = True  # whatever happened while we were away
        return ws

    def _fail_in_flight(self) -> None:
        for rid, pending in list(self._pending.items()):
            if pending.resend and self._opts.reconnect:
                pending.written = False
                continue
            del self._pending[rid]
            if pending.future is not None and not pending.future.done():
                pending.future.set_exception(
                    ErrorReply("unavailable", f"connection lost (code {self.close_code})", rid=rid)
                )

    async def _reconnect(self) -> _WebSocket | None:
        delay = _BACKOFF_START_S
        for attempt in range(1, self._opts.max_reconnect_attempts + 1):
            # Jitter spreads a crowd of clients dropped at once (4009) over the window.
            await asyncio.sleep(random.uniform(delay / 2, delay))
            try:
                return await self._open()
            except ErrorReply as exc:
                log.debug("parley client: reconnect attempt %d failed: %s", attempt, exc)
                if exc.code in _FINAL_HELLO_ERRORS:
                    return None
            except TimeoutError:
                log.debug("parley client: reconnect attempt %d timed out", attempt)
            delay = min(delay * 2, _BACKOFF_CAP_S)
        return None

    async def _resend_pending(self, ws: _WebSocket) -> None:
        """Write every unwritten send, oldest first (sends queued meanwhile included)."""
        while todo := [p for p in self._pending.values() if p.resend and not p.written]:
            for pending in todo:
                pending.written = True
                try:
                    await _write(ws, pending.frame)
                except _DISCONNECTS:
                    return  # dropped again: the read loop sees it and the next reconnect resends

    # ---- incoming frames ------------------------------------------------------------------

    def _on_frame(self, frame: Frame) -> None:
        op = frame.get("op")
        rid = frame.get("rid")
        if op in ("ok", "error") and isinstance(rid, str):
            pending = self._pending.pop(rid, None)
            if pending is not None:
                self._settle(pending, frame)
                return
        if op == "event" and frame.get("type") == "resync" and self._opts.reconnect:
            self._sync_wanted = True
        self._deliver(frame)

    def _settle(self, pending: _Pending, reply: Frame) -> None:
        ok = reply.get("op") == "ok"
        if ok:
            self._note_reply(pending.frame["op"], reply)
        if pending.future is None:
            self._sync_rid = None
            if ok:
                self._replay_sync(reply)
            else:
                log.debug("parley client: recovery sync failed: %s", reply)
            return
        if pending.future.done():  # its caller timed out or was cancelled
            return
        if ok:
            pending.future.set_result(reply)
        else:
            pending.future.set_exception(ErrorReply.from_frame(reply))

    def _deliver(self, frame: Frame) -> None:
        """Buffer a frame for the application, dropping message.new events already delivered."""
        if frame.get("op") == "event" and frame.get("type") == "message.new":
            message = frame.get("message")
            if isinstance(message, dict):
                conv, seq = message.get("conv"), message.get("seq")
                if isinstance(conv, str) and isinstance(seq, int):
                    if not self._seen.add(conv, seq):
                        return
                    if seq == self.last_seq.get(conv, 0) + 1:  # contiguous: the watermark moves
                        self.last_seq[conv] = seq
        hook = self.on_event
        if hook is not None and frame.get("op") == "event":
            try:
                hook(frame)
            except Exception:  # the application's bug must not end the session's reader
                log.exception("parley client: on_event hook failed")
            return
        self._inbox.append(frame)
        self._wake()

    def _note_reply(self, op: str, reply: Frame) -> None:
        """`last_seq` is a watermark: everything up to it is held. Only a sync proves that;
        a send's ok or a history page says nothing about the messages below them."""
        if op != "sync":
            return
        for entry in _list(reply.get("convs")):
            conv, last = entry.get("conv"), entry.get("last_seq")
            messages = _list(entry.get("messages"))
            if not isinstance(conv, str):
                continue
            if not entry.get("more") and isinstance(last, int):
                # Uncut, the reply covers all up to last_seq (even what joined-history hides).
                self._bump(conv, last)
            elif messages:
                self._bump_message(messages[-1])

    def _bump_message(self, message: Any) -> None:
        if isinstance(message, dict):
            conv, seq = message.get("conv"), message.get("seq")
            if isinstance(conv, str) and isinstance(seq, int):
                self._bump(conv, seq)

    def _bump(self, conv: str, seq: int) -> None:
        if seq > self.last_seq.get(conv, 0):
            self.last_seq[conv] = seq

    # ---- recovery sync (reconnect=True) ---------------------------------------------------

    async def _start_recovery_sync(self, ws: _WebSocket) -> None:
        self._sync_wanted = False
        rid = self._next_rid()
        frame: Frame = {"op": "sync", "rid": rid, "since": dict(self.last_seq)}
        self._pending[rid] = _Pending(frame, None, written=True)
        self._sync_rid = rid
        # On failure the read loop sees the drop, and the reconnect asks for a new sync.
        with contextlib.suppress(*_DISCONNECTS):
            await _write(ws, frame)

    def _replay_sync(self, reply: Frame) -> None:
        """Turn a recovery sync's messages into message.new events the client has not seen."""
        cut = False
        for entry in _list(reply.get("convs")):
            messages = _list(entry.get("messages"))
            for message in messages:
                self._deliver({"op": "event", "type": "message.new", "message": message})
            # last_seq now ends at this page, so another sync continues where it stopped.
            cut = cut or (bool(entry.get("more")) and bool(messages))
        if cut:
            self._sync_wanted = True

    # ---- heartbeat ------------------------------------------------------------------------

    async def _beat(self) -> None:
        """Ping every heartbeat_s so the server does not close an idle session (4002)."""
        while not self._terminal:
            interval = float(self.hello.get("heartbeat_s") or _DEFAULT_HEARTBEAT_S)
            await asyncio.sleep(interval)
            try:
                await self.request("ping", timeout=interval)
            except (ErrorReply, TimeoutError) as exc:
                log.debug("parley client: heartbeat ping failed: %s", exc)


class _EventStream:
    """`Client.events()`: an async iterator that ends when the client closes."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def __aiter__(self) -> _EventStream:
        return self

    async def __anext__(self) -> Frame:
        frame = await self._client._take(_is_event, None)
        if frame is None:
            raise StopAsyncIteration
        return frame


async def _write(ws: _WebSocket, frame: Frame) -> None:
    await ws.send_frame(msgspec.json.encode(frame), aiohttp.WSMsgType.TEXT)


def _new_cmid() -> str:
    return uuid.uuid4().hex


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
