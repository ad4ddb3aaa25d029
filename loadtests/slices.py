"""The load itself: the sessions one load process owns, the open-loop sender that drives them
and the accounting of every send (ack, receipts, latency), in this process or in child processes
that take their orders over a pipe.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import functools
import multiprocessing
import multiprocessing.connection
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol

import aiohttp
import msgspec

from loadtests.runtime import NS, raise_nofile, run_loop
from parley.errors import ParleyError
from parley.sdk import AiohttpTransport, Client, Frame

try:
    import psutil
except ImportError:  # the numbers that need it are reported as unknown
    psutil = None

#: Yield to the readers after this many back-to-back sends when the schedule is behind.
SEND_BURST_YIELD = 32


# ---- wire values between the parent and the load processes ----------------------------------


class GroupSpec(msgspec.Struct, frozen=True):
    conv: str
    members: list[int]  # positions in the slice's token list


class SliceSpec(msgspec.Struct, frozen=True):
    """The sessions one load process owns: whole groups, so every receipt of a message is
    counted by the process that sent it."""

    index: int
    count: int
    url: str
    tokens: list[str]
    groups: list[GroupSpec]
    connect_concurrency: int
    text_bytes: int


class StepPlan(msgspec.Struct, frozen=True):
    step: int
    t0_ns: int  # CLOCK_MONOTONIC is system-wide on Linux: every process shares the schedule
    rate: float  # sends/s over all slices
    total_senders: int
    warmup_s: float
    duration_s: float
    grace_s: float


class ConnectResult(msgspec.Struct):
    connected: int
    failed: int
    seconds: float
    errors: dict[str, int]
    generator_rss: int


class StepResult(msgspec.Struct):
    scheduled: int = 0  # sends whose scheduled time fell in the measured window
    acked: int = 0
    errors: dict[str, int] = {}
    unanswered: int = 0  # no reply at all by the end of the grace period
    lost: int = 0  # acked but not received by every member within the grace period
    missing_receipts: int = 0
    duplicate_or_late: int = 0  # receipts of messages whose tracking had ended
    acks_in_window: int = 0
    deliveries_in_window: int = 0
    latency_us: bytes = b""  # array('q'): send -> receipt, one per receipt
    ack_us: bytes = b""  # array('q'): send -> ok
    lag_us: bytes = b""  # array('q'): scheduled -> written (the generator falling behind)
    cpu_s: float = 0.0  # this process's CPU time during the measured window
    sessions_dropped: int = 0
    generator_rss: int = 0


class Command(msgspec.Struct, tag=True):
    pass


class RunStep(Command):
    plan: StepPlan


class Hold(Command):
    pass


class Close(Command):
    pass


_cmd_encode = msgspec.msgpack.Encoder().encode
_cmd_decode = msgspec.msgpack.Decoder(RunStep | Hold | Close).decode


# ---- one slice of the load: its sessions, its schedule, its accounting ------------------------


class _Track:
    """One sent message: when it was due, whether it was acked, how many members got it."""

    __slots__ = ("due", "measured", "state", "receipts", "expected")

    def __init__(self, due: int, measured: bool, expected: int) -> None:
        self.due = due
        self.measured = measured
        self.state = 0  # 0 pending, 1 acked, 2 error
        self.receipts = 0
        self.expected = expected


class LoadSlice:
    """The sessions of one process and the open-loop sender that drives them."""

    def __init__(self, spec: SliceSpec) -> None:
        self.spec = spec
        self.clients: list[Client] = []
        self._client_group: list[int] = []
        self._http: aiohttp.ClientSession | None = None
        self._tracks: dict[str, _Track] = {}
        self._latency: array.array[int] = array.array("q")
        self._ack: array.array[int] = array.array("q")
        self._lag: array.array[int] = array.array("q")
        self._errors: Counter[str] = Counter()
        self._window = (0, 0)
        self._acks_in_window = 0
        self._deliveries_in_window = 0
        self._late = 0
        self._pad = ""

    # ---- sessions -----------------------------------------------------------------------

    async def connect(self) -> ConnectResult:
        spec = self.spec
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        self._http = aiohttp.ClientSession(connector=connector)
        self._pad = "x" * max(0, spec.text_bytes - 24)
        members = [(gi, pos) for gi, g in enumerate(spec.groups) for pos in g.members]
        if not spec.groups:
            members = [(-1, pos) for pos in range(len(spec.tokens))]
        gate = asyncio.Semaphore(spec.connect_concurrency)
        errors: Counter[str] = Counter()
        started = time.monotonic()
        on_event = self._on_event if spec.groups else ignore_events
        transport = AiohttpTransport(self._http)  # one pool for the whole slice

        async def one(token: str) -> Client | None:
            async with gate:
                try:
                    return await Client.connect(spec.url, token, transport=transport, on_event=on_event)
                except ParleyError as err:
                    errors[err.code] += 1
                except (OSError, TimeoutError, aiohttp.ClientError) as exc:
                    errors[type(exc).__name__] += 1
                return None

        made = await asyncio.gather(*(one(spec.tokens[pos]) for _, pos in members))
        for (gi, _), client in zip(members, made):
            if client is not None:
                self.clients.append(client)
                self._client_group.append(gi)
        return ConnectResult(len(self.clients), len(members) - len(self.clients),
                             time.monotonic() - started, dict(errors), _own_rss())

    def dropped(self) -> int:
        return sum(1 for c in self.clients if c.close_code is not None)

    async def close(self) -> None:
        gate = asyncio.Semaphore(500)

        async def one(client: Client) -> None:
            async with gate:
                with contextlib.suppress(Exception):
                    await client.close()

        await asyncio.gather(*(one(c) for c in self.clients))
        if self._http is not None:
            await self._http.close()

    async def hold(self) -> StepResult:
        return StepResult(sessions_dropped=self.dropped(), generator_rss=_own_rss())

    # ---- incoming -----------------------------------------------------------------------

    def _on_event(self, frame: Frame) -> None:
        if frame.get("type") != "message.new":
            return
        now = time.monotonic_ns()
        message = frame["message"]
        track = self._tracks.get(message.get("cmid"))
        if track is None:
            self._late += 1
            return
        track.receipts += 1
        if track.measured:
            # The recipient reads the send time from the text, as any client could.
            text: str = message["text"]
            self._latency.append((now - int(text[2:text.index(";")])) // 1000)
        start, end = self._window
        if start <= now < end:
            self._deliveries_in_window += 1

    def _on_ack(self, track: _Track, future: asyncio.Future[Frame]) -> None:
        now = time.monotonic_ns()
        if future.cancelled():
            track.state = 2
            self._errors["cancelled"] += 1
            return
        exc = future.exception()
        if exc is None:
            track.state = 1
            if track.measured:
                self._ack.append((now - track.due) // 1000)
            start, end = self._window
            if start <= now < end:
                self._acks_in_window += 1
        else:
            track.state = 2
            if track.measured:
                self._errors[exc.code if isinstance(exc, ParleyError) else type(exc).__name__] += 1

    # ---- one measured step --------------------------------------------------------------

    async def run_step(self, plan: StepPlan) -> StepResult:
        spec = self.spec
        self._tracks.clear()
        self._latency, self._ack, self._lag = array.array("q"), array.array("q"), array.array("q")
        self._errors = Counter()
        self._acks_in_window = self._deliveries_in_window = self._late = 0
        win_start = plan.t0_ns + int(plan.warmup_s * NS)
        win_end = win_start + int(plan.duration_s * NS)
        self._window = (win_start, win_end)
        order = self._sender_order()
        if not order or plan.rate <= 0:
            return StepResult(sessions_dropped=self.dropped(), generator_rss=_own_rss())
        local_rate = plan.rate * len(order) / plan.total_senders
        interval = NS / local_rate
        # Slices interleave: slice i starts i/count of an interval later.
        t0 = plan.t0_ns + int(interval * spec.index / spec.count)
        cpu = await self._drive(plan, order, t0, interval, win_start, win_end)
        await self._settle(plan, win_end)
        return self._result(cpu)

    def _sender_order(self) -> list[tuple[Client, str, int]]:
        """Every session sends; consecutive sends go to different groups."""
        by_group: dict[int, list[Client]] = {}
        for client, gi in zip(self.clients, self._client_group):
            by_group.setdefault(gi, []).append(client)
        order: list[tuple[Client, str, int]] = []
        depth = max((len(v) for v in by_group.values()), default=0)
        for i in range(depth):
            for gi, clients in by_group.items():
                if i < len(clients):
                    group = self.spec.groups[gi]
                    order.append((clients[i], group.conv, len(group.members)))
        return order

    async def _drive(self, plan: StepPlan, order: list[tuple[Client, str, int]], t0: int,
                     interval: float, win_start: int, win_end: int) -> float:
        """The open-loop schedule: send k is due at t0 + k * interval whatever the replies do.
        Latency counts from the due time, so a generator that falls behind shows up in it
        (and in the lag numbers) instead of hiding the server's stalls."""
        end = plan.t0_ns + int((plan.warmup_s + plan.duration_s) * NS)
        n = len(order)
        tracks, lag, pad = self._tracks, self._lag, self._pad
        prefix = f"{self.spec.index}.{plan.step}."
        cpu_start: float | None = None
        k = 0
        burst = 0
        monotonic_ns = time.monotonic_ns
        while True:
            due = t0 + int(k * interval)
            if due >= end:
                break
            now = monotonic_ns()
            if due > now:
                burst = 0
                await asyncio.sleep((due - now) / NS)
                continue
            if cpu_start is None and due >= win_start:
                cpu_start = time.process_time()
            client, conv, size = order[k % n]
            measured = win_start <= due < win_end
            cmid = prefix + str(k)
            track = _Track(due, measured, size)
            tracks[cmid] = track
            try:
                future = await client.submit("send", conv=conv, cmid=cmid, text=f"t={due};{pad}")
            except ParleyError as err:
                track.state = 2
                if measured:
                    self._errors[err.code] += 1
            else:
                future.add_done_callback(functools.partial(self._on_ack, track))
            if measured:
                lag.append((monotonic_ns() - due) // 1000)
            k += 1
            burst += 1
            if burst >= SEND_BURST_YIELD:  # behind schedule: let the readers run too
                burst = 0
                await asyncio.sleep(0)
        # The window closes on the clock, not on the last send.
        now = monotonic_ns()
        if now < win_end:
            await asyncio.sleep((win_end - now) / NS)
        cpu_end = time.process_time()
        return cpu_end - (cpu_start if cpu_start is not None else cpu_end)

    async def _settle(self, plan: StepPlan, win_end: int) -> None:
        """Wait until every measured message is answered and received by all, or grace ends."""
        deadline = time.monotonic() + plan.grace_s
        measured = [t for t in self._tracks.values() if t.measured]
        while time.monotonic() < deadline:
            if all(t.state == 2 or (t.state == 1 and t.receipts >= t.expected) for t in measured):
                break
            await asyncio.sleep(0.1)

    def _result(self, cpu_s: float) -> StepResult:
        res = StepResult(errors=dict(self._errors), cpu_s=cpu_s)
        for t in self._tracks.values():
            if not t.measured:
                continue
            res.scheduled += 1
            if t.state == 1:
                res.acked += 1
                if t.receipts < t.expected:
                    res.lost += 1
                    res.missing_receipts += t.expected - t.receipts
            elif t.state == 0:
                res.unanswered += 1
        res.acks_in_window = self._acks_in_window
        res.deliveries_in_window = self._deliveries_in_window
        res.duplicate_or_late = self._late
        res.latency_us = self._latency.tobytes()
        res.ack_us = self._ack.tobytes()
        res.lag_us = self._lag.tobytes()
        res.sessions_dropped = self.dropped()
        res.generator_rss = _own_rss()
        self._tracks.clear()  # what arrives later counts as late
        return res


def ignore_events(_: Frame) -> None:
    """Idle sessions keep no events."""


def _own_rss() -> int:
    if psutil is None:
        return 0
    return int(psutil.Process().memory_info().rss)


# ---- slices in this process or in child processes ---------------------------------------


class SliceHandle(Protocol):
    async def connect(self) -> ConnectResult: ...
    async def run_step(self, plan: StepPlan) -> StepResult: ...
    async def hold(self) -> StepResult: ...
    async def close(self) -> None: ...


class RemoteSlice:
    """A LoadSlice in its own process (spawned: a fork of a running event loop is unsafe)."""

    def __init__(self, spec: SliceSpec) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_child_main, args=(child, msgspec.msgpack.encode(spec)),
                                 name=f"bench-slice-{spec.index}", daemon=True)
        self._proc.start()
        child.close()

    async def _recv(self) -> bytes:
        return await asyncio.get_running_loop().run_in_executor(None, self._conn.recv_bytes)

    async def connect(self) -> ConnectResult:
        return msgspec.msgpack.decode(await self._recv(), type=ConnectResult)

    async def run_step(self, plan: StepPlan) -> StepResult:
        self._conn.send_bytes(_cmd_encode(RunStep(plan)))
        return msgspec.msgpack.decode(await self._recv(), type=StepResult)

    async def hold(self) -> StepResult:
        self._conn.send_bytes(_cmd_encode(Hold()))
        return msgspec.msgpack.decode(await self._recv(), type=StepResult)

    async def close(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.send_bytes(_cmd_encode(Close()))
            await self._recv()
        await asyncio.get_running_loop().run_in_executor(None, self._proc.join, 30)
        if self._proc.is_alive():
            self._proc.kill()


def _child_main(conn: multiprocessing.connection.Connection, spec_bytes: bytes) -> None:
    raise_nofile()
    spec = msgspec.msgpack.decode(spec_bytes, type=SliceSpec)
    run_loop(_child_loop(conn, spec))


async def _child_loop(conn: multiprocessing.connection.Connection, spec: SliceSpec) -> None:
    load = LoadSlice(spec)
    conn.send_bytes(msgspec.msgpack.encode(await load.connect()))
    loop = asyncio.get_running_loop()
    while True:
        cmd = _cmd_decode(await loop.run_in_executor(None, conn.recv_bytes))
        if isinstance(cmd, RunStep):
            conn.send_bytes(msgspec.msgpack.encode(await load.run_step(cmd.plan)))
        elif isinstance(cmd, Hold):
            conn.send_bytes(msgspec.msgpack.encode(await load.hold()))
        else:
            await load.close()
            conn.send_bytes(b"")
            return


class LocalSlice:
    def __init__(self, spec: SliceSpec) -> None:
        self._load = LoadSlice(spec)

    async def connect(self) -> ConnectResult:
        return await self._load.connect()

    async def run_step(self, plan: StepPlan) -> StepResult:
        return await self._load.run_step(plan)

    async def hold(self) -> StepResult:
        return await self._load.hold()

    async def close(self) -> None:
        await self._load.close()


def build_slices(url: str, tokens: list[str], groups: list[tuple[str, list[int]]] | None,
                 procs: int, connect_concurrency: int, text_bytes: int) -> list[SliceHandle]:
    """Whole groups per process (or whole sessions for idle), as even as they come."""
    specs: list[SliceSpec] = []
    if groups:
        buckets: list[list[tuple[str, list[int]]]] = [[] for _ in range(procs)]
        for i, g in enumerate(groups):
            buckets[i % procs].append(g)
        for index, bucket in enumerate(buckets):
            positions = [m for _, members in bucket for m in members]
            local = {m: i for i, m in enumerate(positions)}
            specs.append(SliceSpec(index, procs, url, [tokens[m] for m in positions],
                                   [GroupSpec(conv, [local[m] for m in members]) for conv, members in bucket],
                                   connect_concurrency, text_bytes))
    else:
        for index in range(procs):
            specs.append(SliceSpec(index, procs, url, tokens[index::procs], [], connect_concurrency, text_bytes))
    if procs == 1:
        return [LocalSlice(specs[0])]
    return [RemoteSlice(s) for s in specs]


async def connect_all(slices: Sequence[SliceHandle]) -> dict[str, Any]:
    results = await asyncio.gather(*(s.connect() for s in slices))
    errors: Counter[str] = Counter()
    for r in results:
        errors.update(r.errors)
    return {"connected": sum(r.connected for r in results), "failed": sum(r.failed for r in results),
            "seconds": max(r.seconds for r in results), "errors": dict(errors),
            "generator_rss": sum(r.generator_rss for r in results)}
