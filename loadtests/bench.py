"""The Parley benchmark: an open-loop asyncio (uvloop) load generator that speaks the v1 protocol
through the SDK (`parley.client`) and measures a `parley dev` server.

Scenarios:
  idle    N sessions connect, say hello and stay; server RSS per session.
  groups  C sessions in groups of G, R sends/s in total, open loop (the schedule never waits for
          an ack: no coordinated omission); sends/s acked, deliveries/s, latency send -> receipt at
          every member (the sender's echo included), loss, error replies by code.
  ramp    `groups` at increasing rates on the same sessions; the highest rate that keeps
          p99 <= --p99-ms with zero loss (and no error or unanswered send).

By default it starts its own `parley dev` on a free port and a temporary data dir; `--url` aims
it at a running server instead (`--server-pid` to measure that server's RSS and CPU).
`--topology up` starts `parley up` (the scale-out topology on this machine) instead and reports
CPU and RSS per role. Every measured window also reports the per-hop latency from /metrics.
Run `python -m loadtests.bench --help`; docs/benchmarks.md has the method and the results.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import datetime as dt
import functools
import json
import math
import multiprocessing
import multiprocessing.connection
import os
import platform
import resource
import secrets
import shutil
import shlex
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import aiohttp
import msgspec

from loadtests import hopstats, hoptable, usage
from loadtests.topology import Topology
from parley.app.processes import ChildProcess, free_port, http_ok
from parley.client import Account, Client, ErrorReply, Frame, register

try:
    import psutil
except ImportError:  # the numbers that need it are reported as unknown
    psutil = None

PASSWORD = "bench-password-1"
ACCOUNTS_FILE = "bench-accounts.json"
#: The server's default per-user send limit is 100 per 5 s; above this per-user rate the
#: benchmark would measure the limiter, so it lifts the limit on a server it starts.
DEFAULT_USER_RATE_LIMIT = 20.0
#: Yield to the readers after this many back-to-back sends when the schedule is behind.
SEND_BURST_YIELD = 32
DEFAULT_RAMP = "200,300,400,500,600,700,800,900,1000,1200,1500"
NS = 1_000_000_000
#: Send lag p99 above this: the generator fell behind its own schedule, so its delay is part of
#: the latency measured (honestly: from the due time), and the report says so.
GENERATOR_LAG_WARN_MS = 25.0
T = TypeVar("T")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def raise_nofile() -> None:
    """Soft open-files limit up to the hard cap: one socket per session on each side."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """uvloop when installed (it is a dependency of parley), else asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


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
        on_event = self._on_event if spec.groups else _ignore

        async def one(token: str) -> Client | None:
            async with gate:
                try:
                    return await Client.connect(spec.url, token, http=self._http, on_event=on_event)
                except ErrorReply as err:
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
                self._errors[exc.code if isinstance(exc, ErrorReply) else type(exc).__name__] += 1

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
            except ErrorReply as err:
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


def _ignore(_: Frame) -> None:
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
    _run(_child_loop(conn, spec))


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


# ---- the server under test --------------------------------------------------------------------


class Server:
    """A `parley dev` subprocess (or a running server at `url`, pid optional)."""

    label = "parley dev"
    rss_label = "server RSS"

    def __init__(self, url: str, pid: int | None, data_dir: Path | None = None,
                 process: ChildProcess | None = None) -> None:
        self.url = url
        self.pid = pid
        self.data_dir = data_dir
        self._process = process
        self._ps = psutil.Process(pid) if psutil is not None and pid else None
        self.leftovers: list[str] = []

    @classmethod
    async def start(cls, data_dir: Path, env: dict[str, str], log_path: Path) -> Server:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        process = ChildProcess(
            cls.label, [sys.executable, "-m", "parley", "dev", "--host", "127.0.0.1", "--port", str(port),
                        "--data-dir", str(data_dir)],
            log_path, ready=http_ok(url + "/healthz"), env=env, ready_timeout_s=60.0, stop_timeout_s=30.0,
            poll_s=0.1)
        # Spawned on this (the main) thread: the death signal follows the thread that forked.
        process.spawn()
        try:
            await asyncio.to_thread(process.wait_ready)
        except BaseException:
            await asyncio.to_thread(process.stop)
            raise
        return cls(url, process.pid, data_dir, process)

    async def stop(self) -> None:
        if self._process is not None:
            await asyncio.to_thread(self._process.stop)

    def rss(self) -> int | None:
        if self._ps is None:
            return None
        with contextlib.suppress(psutil.Error):
            return int(self._ps.memory_info().rss)
        return None

    def cpu(self) -> tuple[float, float] | None:
        """(process CPU seconds, main thread CPU seconds): the main thread runs the event loop."""
        if self._ps is None:
            return None
        with contextlib.suppress(psutil.Error):
            times = self._ps.cpu_times()
            main = next((t for t in self._ps.threads() if t.id == self.pid), None)
            main_s = (main.user_time + main.system_time) if main is not None else float("nan")
            return times.user + times.system, main_s
        return None

    def processes(self) -> list[dict[str, Any]]:
        """No topology: hopstats.scrape_all reads the one process at `url`."""
        return []

    def snapshot(self) -> list[usage.ProcSample]:
        if self._ps is None or self.pid is None:
            return []
        one = usage.sample(self._ps, usage.Member("parley dev", "dev", self.pid))
        return [one] if one is not None else []


class ServerUnderTest(Protocol):
    """What the scenarios use of a `Server` or a `Topology`."""

    label: str
    rss_label: str
    url: str
    pid: int | None
    leftovers: list[str]

    @property
    def data_dir(self) -> Path | None: ...

    def rss(self) -> int | None: ...
    def cpu(self) -> tuple[float, float] | None: ...
    def processes(self) -> list[dict[str, Any]]: ...
    def snapshot(self) -> list[usage.ProcSample]: ...
    async def stop(self) -> None: ...


async def start_server(topology: str, data_dir: Path, env: dict[str, str]) -> ServerUnderTest:
    """`parley dev` or `parley up` on a free port, on `data_dir`, logging into it."""
    if topology == "up":
        return await Topology.start(data_dir, env, data_dir / "up.log")
    return await Server.start(data_dir, env, data_dir / "server.log")


def bench_snapshot() -> list[usage.ProcSample]:
    """This process and its load processes (not the server it started)."""
    if psutil is None:
        return []
    out = []
    for pid in [os.getpid(), *(p.pid for p in multiprocessing.active_children() if p.pid)]:
        with contextlib.suppress(psutil.Error):
            one = usage.sample(psutil.Process(pid), usage.Member(f"bench-{pid}", usage.BENCH_ROLE, pid))
            if one is not None:
                out.append(one)
    return out


async def scrape_hops(server: ServerUnderTest) -> dict[str, hopstats.Scrape] | None:
    """Every process's hop histograms (blocking urllib: in a thread); None if one did not answer."""
    try:
        return await asyncio.to_thread(hopstats.scrape_all, server.url, server.processes())
    except (OSError, TimeoutError, ValueError) as exc:
        log(f"hop scrape failed: {exc!r}")
        return None


class ServerWatch:
    """Server CPU over a window (per process, summed per role), RSS samples during it, and
    what every process observed of the hops."""

    def __init__(self, server: ServerUnderTest) -> None:
        self._server = server
        self.cpu_pct: float | None = None
        self.loop_cpu_pct: float | None = None
        self.rss_max: int | None = None
        self.rss_end: int | None = None
        #: Busy CPU of the whole machine (% of one core): the rest is other people's load.
        self.machine_busy_pct: float | None = None
        self.roles: list[usage.RoleUsage] = []
        self.wall_s = 0.0
        self.hops: list[hoptable.HopRow] | None = None
        #: Requests the servers answered with an error in the window, by code and cause.
        self.refused: dict[str, int] | None = None

    async def watch(self, start_ns: int, end_ns: int) -> None:
        await _sleep_until(start_ns)
        begin, wall0 = self._server.snapshot() + bench_snapshot(), time.monotonic()
        busy0 = _machine_busy_s()
        hops0 = await scrape_hops(self._server)
        rss: list[int] = []
        while time.monotonic_ns() < end_ns:
            value = self._server.rss()
            if value is not None:
                rss.append(value)
            await asyncio.sleep(min(1.0, max(0.0, (end_ns - time.monotonic_ns()) / NS)))
        finish, wall = self._server.snapshot() + bench_snapshot(), time.monotonic() - wall0
        busy1 = _machine_busy_s()
        hops1 = await scrape_hops(self._server)
        if busy0 is not None and busy1 is not None and wall > 0:
            self.machine_busy_pct = 100 * (busy1 - busy0) / wall
        self.wall_s = wall
        self.roles = usage.role_usage(begin, finish, wall)
        server = usage.total(self.roles)
        if server.processes and wall > 0:
            self.cpu_pct = server.cpu_pct
            if server.loop_cpu_s is not None:
                self.loop_cpu_pct = 100 * server.loop_cpu_s / wall
        if rss:
            self.rss_max, self.rss_end = max(rss), rss[-1]
        if hops0 is not None and hops1 is not None:
            self.hops = hoptable.hop_rows(hopstats.merged_window(hops0, hops1))
            self.refused = hopstats.refused_in_window(hops0, hops1)

    def report(self, sends_per_s: float | None) -> dict[str, Any]:
        """The roles' and hops' numbers for --json."""
        return {"window_s": self.wall_s, "roles": usage.usage_json(self.roles, self.wall_s, sends_per_s),
                "hops": hoptable.hops_json(self.hops) if self.hops is not None else None,
                "refused": self.refused}

    def lines(self, sends_per_s: float | None, roles: bool) -> list[str]:
        """The per-role table (`roles`: a topology's; one server has its own line) and the hops."""
        out = []
        if roles:
            out.append(f"roles      : CPU in % of one core over the {self.wall_s:.1f} s window, RSS at its end")
            out += usage.role_lines(self.roles, self.wall_s, sends_per_s)
        if self.hops is None:
            out.append("hops       : not scraped (see the log)")
        else:
            out.append("hops       : observed in the window by every process, merged "
                       "(histogram buckets, read as histogram_quantile)")
            out += hoptable.hop_lines(self.hops)
        if self.refused:  # the servers' side of `errors`, with what was behind each
            out.append("refused    : " + ", ".join(f"{key} {n}" for key, n in sorted(self.refused.items())))
        return out


def _machine_busy_s() -> float | None:
    if psutil is None:
        return None
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


async def _sleep_until(t_ns: int) -> None:
    delay = (t_ns - time.monotonic_ns()) / NS
    if delay > 0:
        await asyncio.sleep(delay)


# ---- setup: accounts and groups ---------------------------------------------------------------


class AccountCache:
    """Accounts registered on a kept data dir, so a rerun skips argon2 (tokens survive restarts)."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self.accounts: list[Account] = []
        if path is not None and path.exists():
            raw = json.loads(path.read_text())
            self.accounts = [Account(a["user_id"], a["token"], a["username"]) for a in raw]

    def save(self) -> None:
        if self._path is not None:
            self._path.write_text(json.dumps([a.__dict__ for a in self.accounts]))


async def register_users(url: str, n: int, cache: AccountCache, concurrency: int) -> float:
    """Register until the cache holds n accounts; returns seconds spent."""
    missing = n - len(cache.accounts)
    if missing <= 0:
        return 0.0
    prefix = "b" + secrets.token_hex(3)
    gate = asyncio.Semaphore(concurrency)
    started = time.monotonic()
    done = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def one(i: int) -> Account:
            nonlocal done
            async with gate:
                for attempt in range(5):
                    try:
                        account = await register(url, f"{prefix}-{i}", PASSWORD, http=http)
                        break
                    except ErrorReply as err:
                        if err.code not in ("rate_limited", "unavailable") or attempt == 4:
                            raise
                        await asyncio.sleep((err.retry_after_ms or 500) / 1000)
                done += 1
                if done % 500 == 0:
                    log(f"registered {done}/{missing} users ({done / (time.monotonic() - started):.0f}/s)")
                return account

        made = await asyncio.gather(*(one(i) for i in range(missing)), return_exceptions=True)
    # Keep what was registered even if some failed: the next run registers only the rest.
    cache.accounts.extend(a for a in made if isinstance(a, Account))
    cache.save()
    failed = [e for e in made if isinstance(e, BaseException)]
    if failed:
        raise RuntimeError(f"{len(failed)} registrations failed, e.g. {failed[0]!r}")
    return time.monotonic() - started


async def create_groups(url: str, accounts: Sequence[Account], size: int) -> tuple[list[tuple[str, list[int]]], float]:
    """Groups of `size` consecutive accounts; the first member creates each with conv.create."""
    started = time.monotonic()
    plan = [list(range(i, min(i + size, len(accounts)))) for i in range(0, len(accounts), size)]
    gate = asyncio.Semaphore(32)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def one(members: list[int]) -> str:
            async with gate:
                creator = accounts[members[0]]
                async with await Client.connect(url, creator.token, http=http, heartbeat=False,
                                                on_event=_ignore) as client:
                    reply = await client.request(
                        "conv.create", timeout=60.0, kind="group", title=f"bench {members[0]}",
                        members=[accounts[m].user_id for m in members[1:]])
                    return str(reply["conv"]["id"])

        convs = await asyncio.gather(*(one(m) for m in plan))
    return list(zip(convs, plan)), time.monotonic() - started


# ---- statistics and the report ------------------------------------------------------------------


def _merge_arrays(parts: Sequence[bytes]) -> array.array[int]:
    out: array.array[int] = array.array("q")
    for part in parts:
        out.frombytes(part)
    return out


def percentiles(values_us: array.array[int]) -> dict[str, float | None]:
    """Nearest-rank percentiles, in milliseconds."""
    if not values_us:
        return {k: None for k in ("p50", "p95", "p99", "p999", "max")}
    ordered = sorted(values_us)
    n = len(ordered)

    def at(q: float) -> float:
        return ordered[min(n - 1, max(0, math.ceil(q * n) - 1))] / 1000

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "p999": at(0.999),
            "max": ordered[-1] / 1000}


def merge_steps(parts: Sequence[StepResult]) -> dict[str, Any]:
    errors: Counter[str] = Counter()
    for p in parts:
        errors.update(p.errors)
    return {
        "scheduled": sum(p.scheduled for p in parts),
        "acked": sum(p.acked for p in parts),
        "errors": dict(errors),
        "unanswered": sum(p.unanswered for p in parts),
        "lost": sum(p.lost for p in parts),
        "missing_receipts": sum(p.missing_receipts for p in parts),
        "late_receipts": sum(p.duplicate_or_late for p in parts),
        "acks_in_window": sum(p.acks_in_window for p in parts),
        "deliveries_in_window": sum(p.deliveries_in_window for p in parts),
        "latency_ms": percentiles(_merge_arrays([p.latency_us for p in parts])),
        "receipts_timed": sum(len(p.latency_us) // 8 for p in parts),
        "ack_ms": percentiles(_merge_arrays([p.ack_us for p in parts])),
        "send_lag_ms": percentiles(_merge_arrays([p.lag_us for p in parts])),
        "generator_cpu_s": sum(p.cpu_s for p in parts),
        "sessions_dropped": sum(p.sessions_dropped for p in parts),
        "generator_rss": sum(p.generator_rss for p in parts),
    }


def _ms(v: float | None) -> str:
    return "-" if v is None else (f"{v:.1f}" if v < 100 else f"{v:.0f}")


def _mib(v: int | None) -> str:
    return "?" if v is None else f"{v / 2**20:.1f} MiB"


def _pct_line(p: dict[str, float | None]) -> str:
    return (f"p50 {_ms(p['p50'])}  p95 {_ms(p['p95'])}  p99 {_ms(p['p99'])}  "
            f"p99.9 {_ms(p['p999'])}  max {_ms(p['max'])}")


def step_is_good(m: dict[str, Any], p99_ms: float) -> bool:
    p99 = m["latency_ms"]["p99"]
    return (p99 is not None and p99 <= p99_ms and m["lost"] == 0 and not m["errors"]
            and m["unanswered"] == 0 and m["sessions_dropped"] == 0)


def code_version() -> str:
    """The commit under test, and whether the tree differs from it (numbers move with the code)."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    changed = [line[3:] for line in dirty if line.strip()]
    return head + (f" + uncommitted changes in {', '.join(changed)}" if changed else "") if head else "unknown"


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    ram = psutil.virtual_memory().total if psutil is not None else None
    return {"nproc": os.cpu_count(), "cpu": model, "ram_bytes": ram,
            "python": platform.python_version(), "platform": platform.platform()}


# ---- scenarios ------------------------------------------------------------------------------------


@dataclass
class Run:
    """Everything a scenario shares: knobs, the server, the slices, the report."""

    args: argparse.Namespace
    server: ServerUnderTest
    report: dict[str, Any] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    def say(self, line: str = "") -> None:
        self.lines.append(line)

    @property
    def topology(self) -> bool:
        """The server is `parley up`: per-role lines."""
        return bool(self.args.topology == "up")


def build_slices(url: str, tokens: list[str], groups: list[tuple[str, list[int]]] | None,
                 procs: int, args: argparse.Namespace) -> list[SliceHandle]:
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
                                   args.connect_concurrency, args.text_bytes))
    else:
        for index in range(procs):
            specs.append(SliceSpec(index, procs, url, tokens[index::procs], [],
                                   args.connect_concurrency, args.text_bytes))
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


async def settle_rss(server: ServerUnderTest, seconds: float) -> int | None:
    """RSS after a quiet moment (the minimum of a few samples, so a transient does not count)."""
    samples: list[int] = []
    end = time.monotonic() + seconds
    while True:
        value = server.rss()
        if value is not None:
            samples.append(value)
        if time.monotonic() >= end:
            break
        await asyncio.sleep(0.5)
    return min(samples) if samples else None


async def scenario_idle(run: Run, accounts: list[Account]) -> None:
    args, server = run.args, run.server
    before = await settle_rss(server, 3.0)
    slices = build_slices(server.url, [a.token for a in accounts], None, args.procs, args)
    try:
        conn = await connect_all(slices)
        log(f"{conn['connected']} sessions connected in {conn['seconds']:.1f} s; holding {args.duration:.0f} s")
        after_connect = await settle_rss(server, 5.0)
        t0 = time.monotonic_ns()
        watch = ServerWatch(server)
        await watch.watch(t0, t0 + int(args.duration * NS))
        holds = await asyncio.gather(*(s.hold() for s in slices))
        after = await settle_rss(server, 2.0)
    finally:
        await asyncio.gather(*(s.close() for s in slices))
    dropped = sum(h.sessions_dropped for h in holds)
    held = conn["connected"] - dropped
    per = None
    if before is not None and after is not None and held:
        per = (after - before) / held
    run.report.update({
        "connect": conn, "sessions_held": held, "sessions_dropped": dropped,
        "server_rss_before": before, "server_rss_after_connect": after_connect,
        "server_rss_after_hold": after, "server_rss_per_session": per,
        "server_cpu_pct_hold": watch.cpu_pct, "generator_rss": sum(h.generator_rss for h in holds),
        "hold": watch.report(None),
    })
    run.say(f"sessions   : {conn['connected']} connected in {conn['seconds']:.1f} s "
            f"({conn['failed']} failed {conn['errors'] or ''}), {held} still open after "
            f"{args.duration:.0f} s, {dropped} dropped")
    run.say(f"{server.rss_label:<11}: {_mib(before)} before -> {_mib(after_connect)} connected -> "
            f"{_mib(after)} after the hold")
    if per is not None:
        if args.sessions < 10_000:
            verdict = "the target is for 10,000 sessions"
        else:
            verdict = "MET" if per <= 20 * 1024 and held >= 10_000 else "MISSED"
        whose = " of the gateways" if run.topology else ""
        run.say(f"per session: {per / 1024:.1f} KiB{whose}  (target: 10,000 held at <= 20 KiB each: {verdict})")
    run.say(f"server CPU : {_pct(watch.cpu_pct)} while holding (heartbeats); machine busy "
            f"{_pct(watch.machine_busy_pct)}, load average {os.getloadavg()[0]:.1f}")
    run.say(f"generator  : RSS {_mib(run.report['generator_rss'])}")
    for line in watch.lines(None, run.topology):
        run.say(line)


def _pct(v: float | None) -> str:
    return "?" if v is None else f"{v:.0f}%"


async def run_groups_step(run: Run, slices: Sequence[SliceHandle], senders: int, rate: float,
                          step: int) -> tuple[dict[str, Any], list[str]]:
    """One step's numbers, and its per-role and per-hop lines for the report."""
    args = run.args
    t0 = time.monotonic_ns() + NS  # a second for every process to get the plan
    plan = StepPlan(step, t0, rate, senders, args.warmup, args.duration, args.grace)
    watch = ServerWatch(run.server)
    win_start = t0 + int(args.warmup * NS)
    win_end = win_start + int(args.duration * NS)
    watcher = asyncio.create_task(watch.watch(win_start, win_end))
    parts = await asyncio.gather(*(s.run_step(plan) for s in slices))
    await watcher
    m = merge_steps(parts)
    m.update({
        "rate": rate, "sends_acked_per_s": m["acks_in_window"] / args.duration,
        "deliveries_per_s": m["deliveries_in_window"] / args.duration,
        "server_cpu_pct": watch.cpu_pct, "server_loop_thread_cpu_pct": watch.loop_cpu_pct,
        "server_rss_max": watch.rss_max, "server_rss_end": watch.rss_end,
        "generator_cpu_pct": 100 * m["generator_cpu_s"] / args.duration,
        "machine_busy_pct": watch.machine_busy_pct,
        "loadavg_1m": os.getloadavg()[0],
    })
    m.update(watch.report(m["sends_acked_per_s"]))
    if watch.machine_busy_pct is not None and watch.cpu_pct is not None:
        m["other_cpu_pct"] = max(0.0, watch.machine_busy_pct - watch.cpu_pct - m["generator_cpu_pct"])
    lag_p99 = m["send_lag_ms"]["p99"]
    m["generator_behind"] = lag_p99 is not None and lag_p99 > GENERATOR_LAG_WARN_MS
    return m, watch.lines(m["sends_acked_per_s"], run.topology)


def describe_step(run: Run, m: dict[str, Any], connections: int, baseline: int | None,
                  watch_lines: list[str]) -> None:
    run.say(f"sends      : {m['scheduled']} due in the window, {m['acked']} acked; "
            f"{m['sends_acked_per_s']:.1f}/s acked (target {m['rate']:.0f}/s)")
    run.say(f"errors     : {m['errors'] or 'none'}; unanswered after grace: {m['unanswered']}")
    run.say(f"deliveries : {m['deliveries_per_s']:.0f}/s ({m['deliveries_in_window']} in the window)")
    run.say(f"latency ms : {_pct_line(m['latency_ms'])}  (send -> each member's receipt, "
            f"n={m['receipts_timed']})")
    run.say(f"ack ms     : {_pct_line(m['ack_ms'])}")
    run.say(f"lost       : {m['lost']} messages ({m['missing_receipts']} receipts missing); "
            f"sessions dropped: {m['sessions_dropped']}")
    run.say(f"generator  : CPU {m['generator_cpu_pct']:.0f}% of a core, send lag "
            f"{_pct_line(m['send_lag_ms'])}")
    rss = m["server_rss_max"]
    per = f" = {rss / connections / 1024:.1f} KiB per connection" if rss and connections else ""
    grow = ""
    if rss and baseline is not None and connections:
        grow = f" (+{(rss - baseline) / connections / 1024:.1f} KiB per connection over the idle server)"
    loops = "event-loop threads, summed" if run.topology else "event-loop thread"
    run.say(f"server     : CPU {_pct(m['server_cpu_pct'])} ({loops} "
            f"{_pct(m['server_loop_thread_cpu_pct'])}), {'gateway RSS' if run.topology else 'RSS'} {_mib(rss)}{per}{grow}")
    run.say(f"noise      : other processes used {_pct(m.get('other_cpu_pct'))} of a core during the "
            f"window (machine busy {_pct(m['machine_busy_pct'])} of {os.cpu_count()} cores, "
            f"load average {m['loadavg_1m']:.1f})")
    if m["generator_behind"]:
        run.say(f"warning    : the generator fell behind its schedule (send lag p99 "
                f"{_ms(m['send_lag_ms']['p99'])} ms): the latency includes its delay; try --procs 2")
    for line in watch_lines:
        run.say(line)


async def scenario_groups(run: Run, accounts: list[Account], groups: list[tuple[str, list[int]]],
                          rates: list[float]) -> None:
    args, server = run.args, run.server
    baseline = await settle_rss(server, 2.0)
    slices = build_slices(server.url, [a.token for a in accounts], groups, args.procs, args)
    results: list[dict[str, Any]] = []
    step_lines: list[list[str]] = []
    try:
        conn = await connect_all(slices)
        run.report["connect"] = conn
        run.report["server_rss_baseline"] = baseline
        log(f"{conn['connected']} sessions connected in {conn['seconds']:.1f} s")
        if conn["failed"]:
            raise RuntimeError(f"{conn['failed']} sessions failed to connect: {conn['errors']}")
        await asyncio.sleep(1.0)
        profiler = _start_profiler(run, len(rates))
        for step, rate in enumerate(rates):
            log(f"step {step}: {rate:.0f} sends/s, warmup {args.warmup:.0f} s, measure {args.duration:.0f} s")
            m, watch_lines = await run_groups_step(run, slices, conn["connected"], rate, step)
            m["step"] = step
            step_lines.append(watch_lines)
            good = step_is_good(m, args.p99_ms)
            m["good"] = good
            results.append(m)
            log(f"step {step}: {rate:.0f}/s -> acked {m['sends_acked_per_s']:.0f}/s, p99 "
                f"{_ms(m['latency_ms']['p99'])} ms, lost {m['lost']}, errors {m['errors'] or 0}: "
                f"{'good' if good else 'BAD'}")
            if args.scenario == "ramp" and not good:
                break
            if step + 1 < len(rates):
                await asyncio.sleep(args.pause)
        await _stop_profiler(run, profiler)
    finally:
        await asyncio.gather(*(s.close() for s in slices))
    run.report["steps"] = results
    connections = conn["connected"]
    if args.scenario == "groups":
        m = results[0]
        describe_step(run, m, connections, baseline, step_lines[0])
        target = args.p99_ms
        verdict = "MET" if m["good"] else "MISSED"
        run.say(f"verdict    : p99 <= {target:.0f} ms with zero loss at {m['rate']:.0f} sends/s: {verdict}")
        return
    run.say(f"{'rate/s':>7} {'acked/s':>8} {'deliv/s':>8} {'p50':>6} {'p95':>6} {'p99':>6} {'max':>6} "
            f"{'lost':>5} {'errors':>7} {'srvCPU':>6} {'loop':>5} {'genCPU':>6} {'lag99':>6} {'other':>5}  verdict")
    for m in results:
        lat = m["latency_ms"]
        errs = sum(m["errors"].values()) + m["unanswered"]
        run.say(f"{m['rate']:>7.0f} {m['sends_acked_per_s']:>8.1f} {m['deliveries_per_s']:>8.0f} "
                f"{_ms(lat['p50']):>6} {_ms(lat['p95']):>6} {_ms(lat['p99']):>6} {_ms(lat['max']):>6} "
                f"{m['lost']:>5} {errs:>7} {_pct(m['server_cpu_pct']):>6} "
                f"{_pct(m['server_loop_thread_cpu_pct']):>5} {m['generator_cpu_pct']:>5.0f}% "
                f"{_ms(m['send_lag_ms']['p99']):>6} {_pct(m.get('other_cpu_pct')):>5}  "
                f"{'good' if m['good'] else 'BAD'}{' (generator behind)' if m['generator_behind'] else ''}")
    run.say("(lag99: the generator's send lag p99 in ms; other: CPU of other processes, % of a core)")
    for m, watch_lines in zip(results, step_lines):
        run.say(f"-- step {m['step']}: {m['rate']:.0f} sends/s ({m['sends_acked_per_s']:.1f}/s acked)")
        for line in watch_lines:
            run.say(line)
    good_rates = [m["rate"] for m in results if m["good"]]
    best = max(good_rates) if good_rates else None
    run.report["best_rate"] = best
    if best is None:
        run.say(f"highest good rate: none (p99 <= {args.p99_ms:.0f} ms, zero loss, no errors)")
    else:
        capped = " (the last rate tried: raise --rates)" if results[-1]["good"] else ""
        run.say(f"highest good rate: {best:.0f} sends/s = {best * args.group:.0f} deliveries/s "
                f"(p99 <= {args.p99_ms:.0f} ms, zero loss, no errors){capped}")


# ---- profiling (optional: py-spy) ----------------------------------------------------------------


def _start_profiler(run: Run, steps: int) -> subprocess.Popen[bytes] | None:
    """py-spy on the server over the measured window of the first step (groups only)."""
    path: str | None = run.args.profile
    if not path or run.server.pid is None:
        return None
    if run.topology:
        log("--profile samples one server process: not with --topology up; running without it")
        return None
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        log("--profile needs py-spy (pip install py-spy); running without it")
        return None
    fmt = "raw" if path.endswith(".txt") else "speedscope" if path.endswith(".json") else "flamegraph"
    delay = 1.0 + run.args.warmup
    cmd = [spy, "record", "--pid", str(run.server.pid), "--rate", "200", "--duration",
           str(int(run.args.duration)), "--format", fmt, "--output", path, "--nonblocking"]
    cmd += shlex.split(run.args.profile_args or "")
    # Start when the window starts, as a shell-free delayed launch.
    return subprocess.Popen(["sh", "-c", f"sleep {delay}; exec \"$@\"", "sh", *cmd],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def _stop_profiler(run: Run, proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None:
        return
    _, err = await asyncio.get_running_loop().run_in_executor(None, proc.communicate)
    path = run.args.profile
    if proc.returncode != 0:
        log(f"py-spy failed: {err.decode(errors='replace')[-500:]}")
        return
    run.report["profile"] = path
    run.say(f"profile    : {path} (py-spy, server pid {run.server.pid}, first step's window)")
    if path.endswith(".txt"):
        for line in summarize_collapsed(Path(path)):
            run.say("  " + line)


def summarize_collapsed(path: Path, top: int = 15) -> list[str]:
    """Top functions by own and by total samples, from py-spy's raw (collapsed) output."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        parts = stack.split(";")
        thread = next((f.split(": ", 1)[-1] for f in parts if f.startswith("thread ")), "")
        frames = [f for f in parts if not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        samples += count
        threads[thread] += count
        own[frames[-1]] += count
        for f in set(frames):
            total[f] += count
    if not samples:
        return []
    out = [f"{samples} samples"]
    if len(threads) > 1:
        out.append("by thread: " + ", ".join(f"{t or '?'} {100 * c / samples:.0f}%" for t, c in threads.most_common()))
    out.append("top by own time:")
    out += [f"{100 * c / samples:5.1f}%  {f}" for f, c in own.most_common(top)]
    out.append("top by total (inclusive) time:")
    out += [f"{100 * c / samples:5.1f}%  {f}" for f, c in total.most_common(top)]
    return out


# ---- main ------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m loadtests.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", nargs="?", choices=("idle", "groups", "ramp"), default="groups")
    p.add_argument("--topology", choices=("dev", "up"), default="dev",
                   help="the server the bench starts: dev = `parley dev` (one process), up = `parley up` "
                        "(brokers, 2 gateways, 2 chat-core, 2 delivery; CPU and RSS per role) (default dev)")
    p.add_argument("--url", help="a running server (default: start parley dev)")
    p.add_argument("--server-pid", type=int, help="pid of the --url server, for RSS and CPU")
    p.add_argument("--data-dir", type=Path,
                   help="data dir of the server this starts; kept, and its registered accounts "
                        f"are reused ({ACCOUNTS_FILE}) (default: a temporary dir). With --url: the "
                        "running server's data dir, to reuse the accounts registered there")
    p.add_argument("--sessions", type=int, default=10_000, help="idle: sessions (default 10000)")
    p.add_argument("--connections", "-c", type=int, default=1000, help="groups/ramp: sessions (default 1000)")
    p.add_argument("--group", "-g", type=int, default=50, help="members per group (default 50)")
    p.add_argument("--rate", "-r", type=float, default=500, help="groups: sends/s in total (default 500)")
    p.add_argument("--rates", default=DEFAULT_RAMP, help=f"ramp: sends/s per step (default {DEFAULT_RAMP})")
    p.add_argument("--duration", "-d", type=float, help="measured seconds per step (default 30; idle: hold 65)")
    p.add_argument("--warmup", "-w", type=float, default=5.0, help="unmeasured seconds first (default 5)")
    p.add_argument("--grace", type=float, default=10.0, help="seconds to wait for late receipts (default 10)")
    p.add_argument("--pause", type=float, default=3.0, help="ramp: seconds between steps (default 3)")
    p.add_argument("--p99-ms", type=float, help="p99 target (default: 150 for groups, 250 for ramp)")
    p.add_argument("--text-bytes", type=int, default=64, help="message text length (default 64)")
    p.add_argument("--procs", type=int, default=1, help="load processes (whole groups each; default 1)")
    p.add_argument("--register-concurrency", type=int, default=8)
    p.add_argument("--connect-concurrency", type=int, default=200)
    p.add_argument("--seed-dir", type=Path,
                   help="start from a copy of this data dir (one a run kept with --data-dir, with its "
                        "registered accounts): no argon2 wait, and every run starts on the same database")
    p.add_argument("--no-restart", action="store_true",
                   help="do not restart the server between setup (register, groups) and the run")
    p.add_argument("--profile", metavar="FILE",
                   help="py-spy the server over the first measured window: .txt = collapsed stacks "
                        "(summarised in the report), .json = speedscope, else flamegraph SVG")
    p.add_argument("--profile-args", metavar="ARGS",
                   help='more py-spy record options, e.g. "--threads --gil" (only samples holding the GIL) '
                        'or "--native" (C frames: uvloop, sqlite3)')
    p.add_argument("--json", metavar="PATH", help="also write the numbers as JSON")
    return p


async def main_async(args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    started = time.monotonic()
    scenario = args.scenario
    if args.duration is None:
        # idle: past 2 x heartbeat_s (60 s), so sessions must ping to be held.
        args.duration = 65.0 if scenario == "idle" else 30.0
    if args.p99_ms is None:
        args.p99_ms = 150.0 if scenario == "groups" else 250.0
    rates = [args.rate] if scenario == "groups" else [float(r) for r in args.rates.split(",") if r]
    users = args.sessions if scenario == "idle" else args.connections
    report: dict[str, Any] = {
        "scenario": scenario, "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine(), "code": code_version(), "knobs": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    lines = [f"Parley benchmark: {scenario}", f"code       : {report['code']}"]
    # Every bench account registers from this one IP: the per-IP auth limit would stop it.
    env: dict[str, str] = {"PARLEY_IP_AUTH_BURST": "0"}
    if scenario != "idle":
        per_user = max(rates) / users
        if per_user > DEFAULT_USER_RATE_LIMIT:
            env.update({"PARLEY_SEND_BURST": str(10**9), "PARLEY_SEND_WINDOW_S": "1"})
            limit_note = (f"per-user send rate up to {per_user:.1f}/s > {DEFAULT_USER_RATE_LIMIT:.0f}/s: "
                          "the server's per-user send limit is lifted (PARLEY_SEND_BURST)")
        else:
            limit_note = (f"per-user send rate up to {per_user:.2f}/s <= {DEFAULT_USER_RATE_LIMIT:.0f}/s: "
                          "server rate limits at their defaults")
        report["rate_limit_note"] = limit_note
    owned_tmp: Path | None = None
    server: ServerUnderTest
    if args.url:
        server = Server(args.url.rstrip("/"), args.server_pid)
        # A server started on a kept data dir: its accounts cache saves registering again.
        cache = AccountCache(args.data_dir / ACCOUNTS_FILE if args.data_dir else None)
    else:
        data_dir = args.data_dir
        if data_dir is None:
            owned_tmp = data_dir = Path(tempfile.mkdtemp(prefix="parley-bench-"))
        data_dir.mkdir(parents=True, exist_ok=True)
        if args.seed_dir is not None:
            shutil.copytree(args.seed_dir, data_dir, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("server.log"))
        cache = AccountCache(data_dir / ACCOUNTS_FILE)
        server = await start_server(args.topology, data_dir, env)
    run = Run(args, server, report, lines)
    cleanup: list[str] = []  # what stopping a server found left behind
    try:
        where = f"{server.url}, pid {server.pid or '?'}" + (f", data {server.data_dir}" if server.data_dir else "")
        lines.append(f"server     : {server.label + ' started by the bench' if not args.url else 'external'} ({where})")
        if scenario == "idle":
            lines.append(f"knobs      : sessions={args.sessions} hold={args.duration:.0f}s procs={args.procs}")
        else:
            lines.append(f"knobs      : connections={args.connections} group={args.group} "
                         f"({math.ceil(args.connections / args.group)} groups) "
                         f"rate{'s' if scenario == 'ramp' else ''}={','.join(f'{r:g}' for r in rates)}/s "
                         f"warmup={args.warmup:g}s duration={args.duration:g}s grace={args.grace:g}s "
                         f"text={args.text_bytes}B procs={args.procs} p99 target={args.p99_ms:g}ms")
            lines.append(f"rate limit : {report['rate_limit_note']}")
        log(f"server {server.url} pid {server.pid}; registering {users} users")
        reg_s = await register_users(server.url, users, cache, args.register_concurrency)
        accounts = cache.accounts[:users]
        setup = f"setup      : {users} users ({reg_s:.1f} s registering)"
        groups: list[tuple[str, list[int]]] = []
        if scenario != "idle":
            groups, grp_s = await create_groups(server.url, accounts, args.group)
            setup += f", {len(groups)} groups ({grp_s:.1f} s)"
        if server.data_dir is not None and not args.no_restart and (reg_s or groups):
            # A fresh process: argon2's and setup's memory do not count against the sessions.
            await server.stop()
            cleanup += server.leftovers
            server = run.server = await start_server(args.topology, server.data_dir, env)
            setup += f"; server restarted (pid {server.pid})"
            report["server_pid"] = server.pid
        lines.append(setup)
        if run.topology:
            lines.append("topology   : " + ", ".join(f"{m.name} {m.pid}" for m in server.snapshot()))
        report["setup"] = {"users": users, "register_s": reg_s, "groups": len(groups)}
        if scenario == "idle":
            await scenario_idle(run, accounts)
        else:
            await scenario_groups(run, accounts, groups, rates)
    finally:
        await server.stop()
        cleanup += server.leftovers
        if cleanup:
            report["cleanup"] = cleanup
            lines.append(f"cleanup    : {'; '.join(cleanup)}")
        if owned_tmp is not None:
            shutil.rmtree(owned_tmp, ignore_errors=True)
    wall = time.monotonic() - started
    report["wall_s"] = wall
    lines.append(f"wall       : {wall:.1f} s (setup included)")
    return report, lines


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.url and args.topology != "dev":
        parser.error("--topology up starts its own topology: not with --url")
    raise_nofile()
    try:
        report, lines = _run(main_async(args))
    except KeyboardInterrupt:  # the server it started was stopped on the way out
        log("interrupted")
        return 130
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
