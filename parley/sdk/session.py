"""A protocol session that outlives its sockets: requests and their replies by rid, and, with
`reconnect=True`, reconnecting with backoff, resending unacknowledged sends (the server
de-duplicates them by cmid) and catching up with `sync`, delivering each message once (the
bookkeeping for that is `parley.sdk.catchup`). Connected with an `Account`, it also keeps the
login fresh: before the access token expires it refreshes it over REST and hands the new one to
the live socket (`auth`); a reconnect says hello with the newest.

The rid table lives here, not in the connection: a pending send outlives the socket it was
written to, and is written again on the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import msgspec

from parley.closecodes import CloseCode
from parley.errors import Forbidden, ParleyError, Unauthorized, Unavailable
from parley.sdk.catchup import Catchup, sync_replay
from parley.sdk.connection import Connection, open_connection
from parley.sdk.events import EventHook, EventT, Inbox
from parley.sdk.rest import Account, refresh
from parley.sdk.wire import (Frame, error_from_frame, hello_frame, new_cmid, reply_rid, send_frame, sync_frame,
                             ws_url)
from parley.sdk.transport import AiohttpTransport, Transport

log = logging.getLogger(__name__)

_DEFAULT_HEARTBEAT_S = 30.0
_BACKOFF_START_S = 0.1
_BACKOFF_CAP_S = 5.0
#: A token is refreshed this long before it expires: a quarter of its lifetime, at most a minute.
_REFRESH_AHEAD_MAX_S = 60.0
_REFRESH_RETRY_S = 1.0
# Reconnecting cannot help after these: the token is bad, or we sent a frame the server
# refuses, which a re-sent pending send would only repeat.
_FINAL_CLOSE_CODES = frozenset({CloseCode.BAD_TOKEN, CloseCode.TOO_BIG})


class _NotWritten(Exception):
    """A request's write failed on a dropped socket: the server never saw it, so it may be retried."""


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
    base_url: str
    ws_url: str
    device_id: str | None
    reconnect: bool
    max_reconnect_attempts: int


class Client:
    """One protocol session; with `reconnect=True` it outlives dropped sockets.

    Every refusal raises the `parley.errors` class of its wire code; a client with no usable
    session raises Unavailable.
    """

    hello: Frame
    user_id: str
    close_code: int | None
    reconnects: int
    #: When set, events go to this callback as they arrive instead of the buffer that
    #: `next_event`/`events()`/`drain_events` read (a load generator has no use for the buffer).
    on_event: EventHook | None
    #: The newest tokens of the login (None when connected with a bare token): an application
    #: that keeps its login across runs saves this one, since each refresh spends the last.
    account: Account | None

    def __init__(self, transport: Transport, owns_transport: bool, options: _Options, token: str | Account) -> None:
        """Use `Client.connect`."""
        self._transport = transport
        self._owns_transport = owns_transport
        self._opts = options
        self.account = token if isinstance(token, Account) else None
        #: What hello says; the newest access token once refreshed.
        self._token = token.token if isinstance(token, Account) else token
        #: When the current access token was received (its lifetime tells when to refresh).
        self._token_since = time.time()
        self.hello = {}
        self.user_id = ""
        self.close_code = None
        self.reconnects = 0
        self.on_event = None
        self._rids = itertools.count(1)
        self._conn: Connection | None = None
        self._pending: dict[str, _Pending] = {}
        self._inbox = Inbox()
        self._catchup = Catchup()
        # Set while a session is usable; also set once terminal so waiters wake and fail.
        self._ready = asyncio.Event()
        self._closed = asyncio.Event()
        self._closing = False  # close() was called: the coming socket close is ours
        self._terminal = False
        self._sync_wanted = False
        self._sync_rid: str | None = None
        self._reader: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None

    @classmethod
    async def connect(
        cls,
        base_url: str,
        token: str | Account,
        *,
        device_id: str | None = None,
        reconnect: bool = False,
        transport: Transport | None = None,
        heartbeat: bool = True,
        max_reconnect_attempts: int = 10,
        on_event: EventHook | None = None,
    ) -> Client:
        """Open a session and say hello; raises a ParleyError if the server refuses it.

        `token`: an Account (from register, login or refresh) keeps itself fresh for as long as
        the client runs; a bare access token lasts until it expires (close 4003).
        `transport`: shared and left open (the default is aiohttp's, owned and closed by the
        client). `on_event`: see the attribute of that name; it must not block.
        """
        opts = _Options(base_url, ws_url(base_url), device_id, reconnect, max_reconnect_attempts)
        client = cls(transport if transport is not None else AiohttpTransport(), transport is None, opts, token)
        client.on_event = on_event
        try:
            account = client.account
            if (account is not None and account.refresh_token is not None and account.expires_at is not None
                    and account.expires_at <= time.time() + 1):
                await client._refresh_now(account)  # expired (kept from an earlier run): hello would refuse it
            conn = await client._open()
        except BaseException:
            await client._release_transport()
            raise
        client._conn = conn
        client._ready.set()
        client._reader = asyncio.create_task(client._run(conn), name="parley-client-reader")
        if heartbeat:
            client._heartbeat = asyncio.create_task(client._beat(), name="parley-client-heartbeat")
        if client.account is not None and client.account.refresh_token is not None:
            client._refresher = asyncio.create_task(client._keep_fresh(client.account),
                                                    name="parley-client-refresh")
        return client

    @property
    def last_seq(self) -> dict[str, int]:
        """conv -> the seq up to which this client holds every message (what a sync asks from)."""
        return self._catchup.last_seq

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- requests -------------------------------------------------------------------------

    async def request(self, op: str, timeout: float = 10.0, **fields: Any) -> Frame:
        """Send one request and return its `ok` frame; raises the ParleyError of an `error`.

        Waits (within `timeout`) for a reconnect in progress rather than failing at once.
        """
        frame = {"op": op, "rid": self._next_rid(), **fields}
        return await self._call(frame, timeout, resend=False)

    async def send(
        self, conv: str, text: str, *, cmid: str | None = None, timeout: float = 10.0, **extra: Any
    ) -> Frame:
        """Send a message; with `reconnect=True` it is re-sent (same cmid) after a drop."""
        frame = send_frame(self._next_rid(), conv, text, cmid, **extra)
        return await self._call(frame, timeout, resend=True)

    async def submit(self, op: str, **fields: Any) -> asyncio.Future[Frame]:
        """Write one request and return the future of its reply without waiting for it
        (pipelining, open-loop load). The future gets the `ok` frame or fails with a
        ParleyError, as `request` would; it has no timeout of its own. A `send` (given a cmid,
        or one is made) survives a reconnect like `send()`; other ops wait for a reconnect in
        progress.
        """
        if op == "send" and "cmid" not in fields:
            fields["cmid"] = new_cmid()
        frame = {"op": op, "rid": self._next_rid(), **fields}
        return await self._begin(frame, resend=op == "send")

    async def ping(self) -> Frame:
        return await self.request("ping")

    async def sync(self) -> list[Frame]:
        """`sync` from what this client holds; returns `convs` (last_seq is updated on the way)."""
        reply = await self.request("sync", since=dict(self.last_seq))
        convs = reply.get("convs")
        return list(convs) if isinstance(convs, list) else []

    # ---- calls (docs/protocol.md, Calls) -----------------------------------------------------

    async def call_start(self, conv: str, media: str = "audio", timeout: float = 10.0) -> Frame:
        """Call the conversation (or join its live call): `call`, and `join` (LiveKit's `url`,
        `room`, `token`, `ice_servers`, `role`, `max_video_subscriptions`)."""
        return await self.request("call.start", timeout, conv=conv, media=media)

    async def call_join(self, call: str, timeout: float = 10.0) -> Frame:
        """Answer a call on this device, or join one in progress: `call` and `join`."""
        return await self.request("call.join", timeout, call=call)

    async def call_decline(self, call: str, timeout: float = 10.0) -> Frame:
        return await self.request("call.decline", timeout, call=call)

    async def call_leave(self, call: str, timeout: float = 10.0) -> Frame:
        return await self.request("call.leave", timeout, call=call)

    async def call_end(self, call: str, timeout: float = 10.0) -> Frame:
        """End the call for everyone (its initiator, either side of a direct call, or an admin)."""
        return await self.request("call.end", timeout, call=call)

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
            raise Unavailable("the client is closed")
        future: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        pending = _Pending(frame, future, resend)
        self._pending[rid] = pending
        try:
            conn = self._conn
            if self._ready.is_set() and conn is not None:
                pending.written = True
                try:
                    await conn.write(frame)
                except ConnectionError as exc:
                    # A reconnecting client re-sends sends; and if the reader already
                    # failed the future, awaiting it reports (and retrieves) that.
                    if self._opts.reconnect and not resend:
                        if self._conn is conn:  # the reader has not noticed the drop yet
                            self._ready.clear()
                        raise _NotWritten from exc
                    if not (resend and self._opts.reconnect) and not future.done():
                        raise Unavailable(f"connection lost: {exc}") from exc
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
        return await self._inbox.next_event(type, timeout, conv)

    async def next_typed(self, kind: type[EventT], *, timeout: float = 5.0, conv: str | None = None) -> EventT:
        """`next_event` for one event type of parley/events.py, decoded into its Struct."""
        tag = kind.__struct_config__.tag
        frame = await self._inbox.next_event(tag if isinstance(tag, str) else None, timeout, conv)
        return msgspec.convert(frame, kind)

    def events(self) -> AsyncIterator[Frame]:
        """Every event in arrival order, until the client is closed."""
        return self._inbox.events()

    def drain_events(self) -> list[Frame]:
        """Take every buffered event without waiting (other frames stay for recv_raw)."""
        return self._inbox.drain_events()

    async def send_raw(self, data: str | bytes) -> None:
        """Write one text frame as given, valid or not (for bad-input tests)."""
        conn = self._conn
        if conn is None or self._terminal:
            raise Unavailable("the client is not connected")
        await conn.write_raw(data.encode() if isinstance(data, str) else data)

    async def recv_raw(self, timeout: float = 5.0) -> Frame:
        """The next frame that is not a reply to a pending request (events included)."""
        return await self._inbox.next_frame(timeout)

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
        conn = self._conn
        if conn is not None and not conn.socket.closed:
            # If the server is gone already there is nobody left to say goodbye to.
            with contextlib.suppress(TimeoutError, ConnectionError):
                async with asyncio.timeout(2.0):
                    await conn.socket.close()
        # The reader may be sleeping in a reconnect backoff: stop it rather than wait.
        for task in (self._reader, self._heartbeat, self._refresher):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.wait({task})
        self._shutdown()
        await self._release_transport()

    def _shutdown(self) -> None:
        """Make the client terminal: fail what is pending and wake every waiter."""
        if self._terminal:
            return
        self._terminal = True
        self._conn = None
        for pending in self._pending.values():
            if pending.future is not None and not pending.future.done():
                pending.future.set_exception(Unavailable("the client is closed"))
        self._pending.clear()
        self._ready.set()
        self._closed.set()
        self._inbox.close()
        for task in (self._heartbeat, self._refresher):
            if task is not None and task is not asyncio.current_task():
                task.cancel()

    async def _release_transport(self) -> None:
        if self._owns_transport:
            await self._transport.aclose()

    # ---- connection -----------------------------------------------------------------------

    async def _open(self) -> Connection:
        """Connect and complete hello; sets `hello`/`user_id`. Raises a ParleyError."""
        hello = hello_frame(self._next_rid(), self._token, self._opts.device_id)
        conn = await open_connection(self._transport, self._opts.ws_url, hello, self._on_frame)
        self.hello = conn.hello
        self.user_id = str(conn.hello.get("user_id", ""))
        return conn

    async def _run(self, conn: Connection) -> None:
        """The one reader task: reads until the socket drops, then reconnects or ends."""
        current: Connection | None = conn
        try:
            while current is not None:
                await self._read(current)
                current = await self._recover(current)
        finally:
            self._shutdown()
        await self._release_transport()  # not reached when close() cancels us; close() does it

    async def _read(self, conn: Connection) -> None:
        while True:
            # The recovery sync is started here because only the reader may await its reply.
            if self._sync_wanted and self._sync_rid is None:
                await self._start_recovery_sync(conn)
            frame = await conn.read()
            if frame is None:
                return
            self._on_frame(frame)

    async def _recover(self, dropped: Connection) -> Connection | None:
        """After a drop: fail what cannot survive it, then reconnect if allowed (else None)."""
        self._conn = None
        self._ready.clear()
        self._sync_rid = None
        if self._closing:
            return None
        self.close_code = dropped.socket.close_code
        log.debug("parley sdk: socket closed with %s", self.close_code)
        self._fail_in_flight()
        if not self._opts.reconnect or self.close_code in _FINAL_CLOSE_CODES:
            return None
        conn = await self._reconnect()
        if conn is None:
            return None
        await self._resend_pending(conn)
        self._conn = conn
        self._ready.set()
        self.reconnects += 1
        self._sync_wanted = True  # whatever happened while we were away
        return conn

    def _fail_in_flight(self) -> None:
        for rid, pending in list(self._pending.items()):
            if pending.resend and self._opts.reconnect:
                pending.written = False
                continue
            del self._pending[rid]
            if pending.future is not None and not pending.future.done():
                pending.future.set_exception(Unavailable(f"connection lost (code {self.close_code})"))

    async def _reconnect(self) -> Connection | None:
        delay = _BACKOFF_START_S
        for attempt in range(1, self._opts.max_reconnect_attempts + 1):
            # Jitter spreads a crowd of clients dropped at once (4009) over the window.
            await asyncio.sleep(random.uniform(delay / 2, delay))
            try:
                return await self._open()
            except (Unauthorized, Forbidden) as exc:
                # A hello refused for who we are will be refused again.
                log.debug("parley sdk: reconnect attempt %d refused: %s", attempt, exc)
                return None
            except ParleyError as exc:
                log.debug("parley sdk: reconnect attempt %d failed: %s", attempt, exc)
            except TimeoutError:
                log.debug("parley sdk: reconnect attempt %d timed out", attempt)
            delay = min(delay * 2, _BACKOFF_CAP_S)
        return None

    async def _resend_pending(self, conn: Connection) -> None:
        """Write every unwritten send, oldest first (sends queued meanwhile included)."""
        while todo := [p for p in self._pending.values() if p.resend and not p.written]:
            for pending in todo:
                pending.written = True
                try:
                    await conn.write(pending.frame)
                except ConnectionError:
                    return  # dropped again: the read loop sees it and the next reconnect resends

    # ---- incoming frames ------------------------------------------------------------------

    def _on_frame(self, frame: Frame) -> None:
        rid = reply_rid(frame)
        if rid is not None:
            pending = self._pending.pop(rid, None)
            if pending is not None:
                self._settle(pending, frame)
                return
        if frame.get("op") == "event" and frame.get("type") == "resync" and self._opts.reconnect:
            self._sync_wanted = True
        self._deliver(frame)

    def _settle(self, pending: _Pending, reply: Frame) -> None:
        ok = reply.get("op") == "ok"
        if ok and pending.frame["op"] == "sync":
            self._catchup.note_sync(reply)
        if pending.future is None:
            self._sync_rid = None
            if ok:
                self._replay_sync(reply)
            else:
                log.debug("parley sdk: recovery sync failed: %s", reply)
            return
        if pending.future.done():  # its caller timed out or was cancelled
            return
        if ok:
            pending.future.set_result(reply)
        else:
            pending.future.set_exception(error_from_frame(reply))

    def _deliver(self, frame: Frame) -> None:
        """Buffer a frame for the application, dropping message.new events already delivered."""
        if not self._catchup.admit(frame):
            return
        hook = self.on_event
        if hook is not None and frame.get("op") == "event":
            try:
                hook(frame)
            except Exception:  # the application's bug must not end the session's reader
                log.exception("parley sdk: on_event hook failed")
            return
        self._inbox.put(frame)

    # ---- recovery sync (reconnect=True) ---------------------------------------------------

    async def _start_recovery_sync(self, conn: Connection) -> None:
        self._sync_wanted = False
        rid = self._next_rid()
        frame = sync_frame(rid, self.last_seq)
        self._pending[rid] = _Pending(frame, None, written=True)
        self._sync_rid = rid
        # On failure the read loop sees the drop, and the reconnect asks for a new sync.
        with contextlib.suppress(ConnectionError):
            await conn.write(frame)

    def _replay_sync(self, reply: Frame) -> None:
        """Deliver a recovery sync's messages that the client has not seen."""
        events, cut = sync_replay(reply)
        for event in events:
            self._deliver(event)
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
            except (ParleyError, TimeoutError) as exc:
                log.debug("parley sdk: heartbeat ping failed: %s", exc)


    # ---- keeping the login fresh (connected with an Account) -------------------------------

    async def _keep_fresh(self, account: Account) -> None:
        """Before the access token expires: the next pair over REST, then `auth` on the live
        socket. A login that is over (revoked, expired) is left to end: the server closes the
        session 4003 when the token runs out. A refresh that fails otherwise is tried again."""
        while not self._terminal:
            expires_at = account.expires_at if account.expires_at is not None else self.hello.get("expires_at")
            if not isinstance(expires_at, int):
                return
            ahead = min(_REFRESH_AHEAD_MAX_S, (expires_at - self._token_since) / 4)
            await asyncio.sleep(max(0.0, expires_at - ahead - time.time()))
            try:
                account = await self._refresh_now(account)
            except (Unauthorized, Forbidden) as exc:
                log.debug("parley sdk: the login is over: %s", exc)
                return
            except (ParleyError, ConnectionError, TimeoutError) as exc:
                log.debug("parley sdk: refresh failed, trying again: %s", exc)
                await asyncio.sleep(_REFRESH_RETRY_S)

    async def _refresh_now(self, account: Account) -> Account:
        fresh = await refresh(self._opts.base_url, account, transport=self._transport)
        self.account, self._token, self._token_since = fresh, fresh.token, time.time()
        if self._ready.is_set() and not self._terminal:
            try:
                await self.request("auth", token=fresh.token)
            except (Unavailable, TimeoutError) as exc:  # dropped meanwhile: the reconnect's hello has it
                log.debug("parley sdk: auth not delivered: %s", exc)
        return fresh
