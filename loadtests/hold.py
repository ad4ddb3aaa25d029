"""`python -m loadtests.hold`: hold many idle sessions at the least client CPU, to measure what
the server holds where Locust's own cost is the limit. On 2 cores a Locust worker spends ~3 ms
of CPU per connect and a request event per ping (gevent, websocket-client, Locust's stats), so
at 100,000 sessions the load generator, not Parley, ran out of CPU first (docs/loadtesting.md).

Each process is one asyncio loop (uvloop) with one task per session on aiohttp: connect from the
process's own source address in 127.0.0.0/8 (past ~28k ephemeral ports per address pair), hello,
then a ping every `heartbeat_s` the server gave; frames through `parley.sdk.wire`, as the SDK
and Locust. Sessions start at `--rate` per second in all, are held `--duration` seconds after
the last has connected, then closed. Every 10 s a line: sessions held, connects failed
(retried with backoff), unexpected closes, pings failed, ping p99; at the end a JSON summary.
Accounts come from `parley admin loadtest-users`.

    python -m loadtests.hold --url http://127.0.0.1:8080 --accounts tokens.json \\
        --sessions 100000 --procs 6 --rate 300 --duration 600 [--topology DIR] [--out FILE]

`--topology` (a `parley up` data dir) adds the server's CPU and RSS per role to each line.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import multiprocessing as mp
import queue as queue_module
import random
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import aiohttp

from loadtests import usage
from loadtests.locust.fanout_tally import percentile
from loadtests.locust.plan import read_accounts
from loadtests.runtime import raise_nofile, run_loop
from parley.sdk.wire import decode_frame, encode_frame, hello_frame, ws_url

#: Source addresses for the processes: 127.0.2.1, 127.0.2.2, ...
SOURCE_NET = ipaddress.ip_network("127.0.2.0/24")
REPORT_EVERY_S = 10.0
CONNECT_TIMEOUT_S = 30.0
PING_TIMEOUT_S = 10.0
BACKOFF_START_S, BACKOFF_CAP_S = 0.5, 10.0


@dataclass
class Counts:
    """One process's figures since it started (the parent adds them up)."""

    held: int = 0
    connected: int = 0
    connect_failures: int = 0
    unexpected_closes: int = 0
    pings: int = 0
    ping_failures: int = 0
    ping_ms: list[float] = field(default_factory=list)  # since the last report

    def report(self) -> dict[str, Any]:
        out = asdict(self)
        self.ping_ms = []
        return out


class Holder:
    def __init__(self, index: int, url: str, tokens: list[str], source_ip: str, rate: float, duration_s: float,
                 queue: Any) -> None:
        self.index = index
        self.url, self.tokens, self.source_ip = ws_url(url), tokens, source_ip
        self.rate, self.duration_s, self.queue = rate, duration_s, queue
        self.counts = Counts()
        self.stop = asyncio.Event()

    async def run(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, local_addr=(self.source_ip, 0), force_close=True)
        async with aiohttp.ClientSession(connector=connector) as http:
            reporter = asyncio.create_task(self._report_every())
            tasks = []
            for token in self.tokens:
                tasks.append(asyncio.create_task(self._session(http, token)))
                await asyncio.sleep(1 / self.rate)
            while self.counts.connected < len(self.tokens):
                await asyncio.sleep(1)  # the last connects (retries included)
            self.queue.put(("ramped", self.index, time.monotonic()))
            self.queue.put(("counts", self.index, self.counts.report()))  # the held figure at its peak
            await asyncio.sleep(self.duration_s)
            self.stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            reporter.cancel()
            self.queue.put(("counts", self.index, self.counts.report()))

    async def _report_every(self) -> None:
        while True:
            await asyncio.sleep(REPORT_EVERY_S)
            self.queue.put(("counts", self.index, self.counts.report()))

    async def _session(self, http: aiohttp.ClientSession, token: str) -> None:
        delay = BACKOFF_START_S
        while not self.stop.is_set():
            try:
                ws = await http.ws_connect(self.url, timeout=aiohttp.ClientWSTimeout(ws_close=2),
                                           autoping=True, max_msg_size=0)
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
                self.counts.connect_failures += 1
                await asyncio.sleep(random.uniform(delay / 2, delay))
                delay = min(delay * 2, BACKOFF_CAP_S)
                continue
            try:
                await self._hold(ws, token)
            finally:
                await ws.close()

    async def _hold(self, ws: aiohttp.ClientWebSocketResponse, token: str) -> None:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await ws.send_str(encode_frame(hello_frame("h", token)).decode())
                reply = decode_frame((await ws.receive()).data)
        except (asyncio.TimeoutError, TypeError, aiohttp.ClientError):
            self.counts.connect_failures += 1
            return
        if not reply or reply.get("op") != "ok":
            self.counts.connect_failures += 1
            return
        heartbeat_s = float(reply.get("heartbeat_s") or 30)
        self.counts.connected += 1
        self.counts.held += 1
        try:
            await self._beat(ws, heartbeat_s)
        finally:
            self.counts.held -= 1

    async def _beat(self, ws: aiohttp.ClientWebSocketResponse, heartbeat_s: float) -> None:
        """Pings (each answered by its own `ok`); anything else that arrives is read and dropped.
        Returns at the stop, or after counting an unexpected close."""
        rid = 0
        next_ping = time.monotonic() + random.uniform(0, heartbeat_s)  # spread over the period
        sent_at: dict[str, float] = {}
        while not self.stop.is_set():
            try:  # asleep until the next ping is due, unless a frame comes
                msg = await ws.receive(timeout=max(0.001, next_ping - time.monotonic()))
            except asyncio.TimeoutError:
                msg = None
            now = time.monotonic()
            if msg is not None:
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    if not self.stop.is_set():
                        self.counts.unexpected_closes += 1
                    return
                frame = decode_frame(msg.data) if msg.type is aiohttp.WSMsgType.TEXT else None
                started = sent_at.pop(str(frame.get("rid")), None) if frame else None
                if started is not None:
                    self.counts.pings += 1
                    self.counts.ping_ms.append((now - started) * 1000)
            if now >= next_ping:
                for r, started in list(sent_at.items()):  # unanswered since the last ping
                    if now - started > PING_TIMEOUT_S:
                        del sent_at[r]
                        self.counts.ping_failures += 1
                rid += 1
                sent_at[str(rid)] = now
                await ws.send_str(encode_frame({"op": "ping", "rid": str(rid)}).decode())
                next_ping = now + heartbeat_s


def _process(index: int, url: str, tokens: list[str], source_ip: str, rate: float, duration_s: float,
             queue: Any) -> None:
    raise_nofile()
    run_loop(Holder(index, url, tokens, source_ip, rate, duration_s, queue).run())


def _server(topology: Path | None, before: dict[int, usage.ProcSample], wall_s: float) -> dict[str, Any]:
    """CPU (% of a core since the start) and RSS (MiB) per role of the `parley up` in `topology`."""
    if topology is None or usage.psutil is None:
        return {}
    doc = json.loads((topology / "topology.json").read_text())
    out: dict[str, dict[str, float]] = {}
    for member in usage.members_of(doc):
        try:
            now = usage.sample(usage.psutil.Process(member.pid), member)
        except usage.psutil.Error:
            continue
        if now is None:
            continue
        first = before.setdefault(member.pid, now)
        role = out.setdefault(member.role, {"cpu_pct": 0.0, "rss_mib": 0.0})
        role["cpu_pct"] = round(role["cpu_pct"] + 100 * (now.cpu_s - first.cpu_s) / max(wall_s, 1e-9), 1)
        role["rss_mib"] = round(role["rss_mib"] + now.rss / 2**20, 1)
    return out


def _sum(counts: Any) -> dict[str, int]:
    total = {f.name: 0 for f in fields(Counts) if f.name != "ping_ms"}
    for one in counts:
        for key, value in one.items():
            total[key] = total.get(key, 0) + value
    return total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--accounts", type=Path, required=True, help="tokens from `parley admin loadtest-users`")
    ap.add_argument("--sessions", type=int, required=True)
    ap.add_argument("--procs", type=int, default=6, help="client processes (each at most ~19,000 sessions)")
    ap.add_argument("--rate", type=float, default=200.0, help="connects per second, in all")
    ap.add_argument("--duration", type=float, default=600.0, help="seconds held after the last connect")
    ap.add_argument("--topology", type=Path, help="the `parley up` data dir: its CPU and RSS per role")
    ap.add_argument("--out", type=Path, help="the JSON summary")
    args = ap.parse_args(argv)
    tokens = [a.token for a in read_accounts(args.accounts)[:args.sessions]]
    if len(tokens) < args.sessions:
        ap.error(f"{args.accounts} has {len(tokens)} accounts, not {args.sessions}")
    queue: Any = mp.get_context("spawn").Queue()
    addresses = list(SOURCE_NET.hosts())
    procs = [mp.get_context("spawn").Process(target=_process, args=(
        p, args.url, tokens[p::args.procs], str(addresses[p]), args.rate / args.procs, args.duration, queue))
        for p in range(args.procs)]
    started = time.monotonic()
    server_before: dict[int, usage.ProcSample] = {}
    _server(args.topology, server_before, 1.0)
    for proc in procs:
        proc.start()
    latest: dict[int, dict[str, Any]] = {}  # process -> its cumulative figures
    ping_ms: list[float] = []
    ramped: list[float] = []
    peak_held, lines = 0, []
    next_line = started + REPORT_EVERY_S
    while any(p.is_alive() for p in procs) or not queue.empty():
        try:
            kind, index, data = queue.get(timeout=1)
        except queue_module.Empty:
            kind = ""
        if kind == "ramped":
            ramped.append(data)
        elif kind == "counts":
            ping_ms += data.pop("ping_ms")
            latest[index] = data
            peak_held = max(peak_held, _sum(latest.values())["held"])
        now = time.monotonic()
        if now >= next_line:
            next_line = now + REPORT_EVERY_S
            total = _sum(latest.values())
            line = {"t_s": round(now - started), **total, "ping_p99_ms": round(percentile(ping_ms, 99), 1) if ping_ms else None,
                    "server": _server(args.topology, server_before, now - started)}
            ping_ms = []
            lines.append(line)
            print(json.dumps(line), flush=True)
    summary = {"sessions": args.sessions, "procs": args.procs, "rate": args.rate, "duration_s": args.duration,
               "peak_held": peak_held, "ramp_s": round(max(ramped) - started) if ramped else None,
               "final": _sum(latest.values()), "lines": lines,
               "command": " ".join([sys.executable, "-m", "loadtests.hold", *(argv or sys.argv[1:])])}
    if args.out is not None:
        args.out.write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "lines"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
