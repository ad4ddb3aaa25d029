"""`make loadtest`: one command for a whole Locust run.

Starts the system under test (`parley up`, or `parley dev` with SYSTEM=dev) unless a TARGET URL
is given, makes the load-test accounts (`parley admin loadtest-users`) and the scenario's plan,
runs headless distributed Locust (a master and N worker processes, each worker on its own source
address in 127.0.0.0/8 when the target is on loopback, to get past ~28k ephemeral ports per
address pair), injects the scenario's fault, and leaves in the results folder:

    report.html       Locust's report, with its charts
    summary.json      the figures: per request name count/failures/p50/p95/p99/max, the channel
                      fan-out, faults, CPU and RSS per role of the server and of Locust, the machine
    locust.json       Locust's own final stats; locust_*.csv; master.log, worker-N.log; plan.json
                      without tokens (plan-summary.json); sut/ (the server's data dir and logs)

    python -m loadtests.locust.run --scenario chat --users 2000 --spawn-rate 200 --duration 60
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import ipaddress
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from loadtests import usage
from loadtests.locust import faults
from loadtests.locust.latency import CLOCKS
from loadtests.locust.plan import Layout, read_accounts, summary, write_plan
from loadtests.locust.prepare import build_plan
from loadtests.locust.worker import SOURCE_IP_ENV
from loadtests.server import ServerUnderTest, start_server
from loadtests.topology import Topology
from parley import limits as L
from parley.app.processes import ChildProcess, free_port
from parley.limits import Limits

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
RESULTS = ROOT / "loadtests" / "results"
#: Active WebSocket users one Locust worker process sustains (TEST-INFRA's measurement).
USERS_PER_WORKER = 2000
#: Source addresses for the workers: 127.0.1.1, 127.0.1.2, ...
SOURCE_NET = ipaddress.ip_network("127.0.1.0/24")
SCENARIOS = ("hold", "chat", "channel", "biggroup", "storm", "rolling")
#: Sends/s per chatter in `chat`: 1% of 100,000 users at 200 sends/s in all (issue 16).
SENDS_PER_CHATTER_S = 0.2


@dataclass(frozen=True)
class Scenario:
    layout: Layout
    fault: str | None  # "kill" or "rolling", injected at fault_at_s


def scenario(args: argparse.Namespace) -> Scenario:
    """What each scenario runs, from the users and the knobs given."""
    users = args.users
    if args.scenario in ("chat", "storm", "rolling"):
        chatters = max(2, round(users * args.chat_fraction))
        rate = args.rate if args.rate is not None else chatters * SENDS_PER_CHATTER_S
        layout = Layout(chatters=chatters, group_size=min(args.group_size, chatters), chat_rate=rate)
        return Scenario(layout, {"storm": "kill", "rolling": "rolling"}.get(args.scenario))
    if args.scenario == "channel":
        # --channel-members above the users: members who are offline (each worker starts its
        # first accounts, the poster first of all).
        members = max(users, args.channel_members or users)
        return Scenario(Layout(subscribers=members - 1, post_rate=args.rate if args.rate is not None else 1.0), None)
    if args.scenario == "biggroup":
        size = min(users, args.big_group)
        return Scenario(Layout(chatters=size, group_size=size, chat_rate=args.rate if args.rate is not None else 5.0),
                        None)
    return Scenario(Layout(), None)


def server_env(layout: Layout) -> dict[str, str]:
    """The settings of a server started here for `layout`.

    One loopback address stands for a worker's thousands of clients, which a storm or a rolling
    restart sends back at once: a per-address cap on handshakes would measure itself, not the
    reconnect (off here; docs/operations.md). The channel's owner invites its members
    MAX_MEMBERS_PER_REQUEST at a time: past the default budget of invites (30 per 10 minutes)
    the next invite is refused, which stopped a 100,000-member channel at 30,001."""
    env = {"PARLEY_MAX_HANDSHAKES_PER_IP": "0"}
    invites = math.ceil(layout.subscribers / L.MAX_MEMBERS_PER_REQUEST)
    if invites > Limits().invite_burst:
        env["PARLEY_INVITE_BURST"] = str(invites)
    return env


def source_ips(url: str, workers: int) -> list[str | None]:
    """One loopback address per worker when the target is on loopback; none otherwise (a real
    cluster is reached from many machines or pods, each with its own address)."""
    host = urlsplit(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback or urlsplit(url).scheme not in ("http", "ws"):
        return [None] * workers
    hosts = list(SOURCE_NET.hosts())
    return [str(hosts[w]) for w in range(workers)]


def locust_users(users: int, workers: int) -> int:
    """The user count Locust is given: a multiple of the workers. Locust spreads users evenly
    over its workers in an order of its own, not the plan's worker index, so with 10,001 users on
    5 workers the plan's 2,001-account worker could get 2,000 users and one account never ran.
    Each worker now gets ceil(users / workers); a worker with fewer accounts stops the extra
    users at once (the plan deals accounts to within one)."""
    return workers * math.ceil(users / workers)


def _args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", choices=SCENARIOS, default="chat")
    ap.add_argument("--users", type=int, required=True)
    ap.add_argument("--spawn-rate", type=float, required=True, help="users started per second")
    ap.add_argument("--duration", type=int, required=True, help="seconds of load after the start")
    ap.add_argument("--target", default="", help="a running server's URL (then --accounts is needed)")
    ap.add_argument("--accounts", type=Path, default=None, help="tokens from `parley admin loadtest-users`")
    ap.add_argument("--system", choices=("up", "dev"), default="up", help="what to start without --target")
    ap.add_argument("--gateways", type=int, default=0,
                    help="gateway processes of the `parley up` started here (default: its own, 2); each holds "
                         "at most its open-files limit of sessions")
    ap.add_argument("--workers", type=int, default=0, help=f"default: one per {USERS_PER_WORKER} users")
    ap.add_argument("--chat-fraction", type=float, default=0.01)
    ap.add_argument("--group-size", type=int, default=50)
    ap.add_argument("--big-group", type=int, default=1000)
    ap.add_argument("--channel-members", type=int, default=0,
                    help="channel: members in all (default: the users); those above the users stay offline")
    ap.add_argument("--rate", type=float, default=None,
                    help="sends/s in all (chat: 0.2 per chatter; biggroup: 5) or posts/s (channel: 1)")
    ap.add_argument("--fault-at", type=float, default=None,
                    help="seconds after Locust starts (default: the ramp plus a third of the duration)")
    ap.add_argument("--clock", choices=CLOCKS, default="mono")
    ap.add_argument("--grace-s", type=float, default=10.0)
    ap.add_argument("--results", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.target and args.accounts is None:
        ap.error("--target needs --accounts (make them there with `parley admin loadtest-users`)")
    if args.scenario in ("storm", "rolling") and (args.target or args.system != "up"):
        ap.error(f"{args.scenario} kills gateways of the `parley up` this command starts")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    stamp = dt.datetime.now(dt.timezone.utc)
    results = args.results or RESULTS / f"{stamp:%Y%m%d-%H%M%S}-{args.scenario}"
    results.mkdir(parents=True, exist_ok=True)
    workers = args.workers or max(1, math.ceil(args.users / USERS_PER_WORKER))
    plan_of = scenario(args)
    sut: ServerUnderTest | None = None
    try:
        if args.target:
            url, accounts_file = args.target, args.accounts
        else:
            (results / "sut").mkdir(exist_ok=True)
            sut = asyncio.run(start_server(args.system, results / "sut", server_env(plan_of.layout),
                                           args.gateways or None))
            url, accounts_file = sut.url, results / "accounts.json"
            _make_accounts(results / "sut", max(args.users, plan_of.layout.needs()), accounts_file)
        accounts = read_accounts(accounts_file)[:max(args.users, plan_of.layout.needs())]
        plan = asyncio.run(build_plan(url, args.scenario, accounts, plan_of.layout, workers))
        write_plan(plan, results / "plan.json")
        (results / "plan-summary.json").write_text(json.dumps(summary(plan), indent=2))
        report = _run_locust(args, url, results, workers, plan_of, sut)
    finally:
        leftovers = sut.leftovers if sut is not None else []
        if sut is not None:
            asyncio.run(sut.stop())
    report["meta"] = {"command": shlex.join([sys.executable, "-m", "loadtests.locust.run", *(argv or sys.argv[1:])]),
                      "started_utc": stamp.isoformat(timespec="seconds"), "machine": _machine(),
                      "target": args.target or f"parley {args.system} (started here)", "workers": workers,
                      "gateways": args.gateways or None,
                      "leftovers": leftovers}
    (results / "summary.json").write_text(json.dumps(report, indent=2))
    print(f"results: {results}")
    failures = sum(int(e["failures"]) for e in report["requests"].values())
    return 0 if failures == 0 else 1


def _make_accounts(data_dir: Path, count: int, out: Path) -> None:
    """`parley admin loadtest-users` on the store of the server just started (its own setting)."""
    env = {**os.environ, "PARLEY_ALLOW_LOADTEST_USERS": "1"}
    subprocess.run([sys.executable, "-m", "parley", "admin", "--data-dir", str(data_dir), "loadtest-users",
                    "--count", str(count), "--out", str(out)], env=env, check=True)


def _run_locust(args: argparse.Namespace, url: str, results: Path, workers: int, plan_of: Scenario,
                sut: ServerUnderTest | None) -> dict[str, Any]:
    port = free_port()
    common = ["-f", str(LOCUSTFILE), "--host", url, "--parley-plan", str(results / "plan.json"),
              "--parley-clock", args.clock, "--parley-grace-s", str(args.grace_s)]
    # The run lasts the ramp plus the duration plus a grace, so the last sends can be delivered.
    ramp_s = math.ceil(args.users / args.spawn_rate)
    master = ChildProcess("locust master", [
        sys.executable, "-m", "locust", *common, "--master", "--headless", "--master-bind-host", "127.0.0.1",
        "--master-bind-port", str(port), "--expect-workers", str(workers), "--users", str(locust_users(args.users, workers)),
        "--spawn-rate", str(args.spawn_rate), "--run-time", f"{ramp_s + args.duration}s", "--stop-timeout", "10",
        "--html", str(results / "report.html"), "--csv", str(results / "locust"),
        "--json-file", str(results / "locust"), "--parley-summary", str(results / "parley-summary.json"),
        "--only-summary"], results / "master.log", ready=lambda: True, stop_timeout_s=30.0)
    worker_procs = [ChildProcess(f"locust worker {w}", [
        sys.executable, "-m", "locust", *common, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)],
        results / f"worker-{w}.log", ready=lambda: True, stop_timeout_s=30.0,
        env={SOURCE_IP_ENV: ip} if ip else {}) for w, ip in enumerate(source_ips(url, workers))]
    before = _snapshot(sut, [master, *worker_procs])
    started = time.monotonic()
    master.spawn()
    for proc in worker_procs:
        proc.spawn()
    fault: dict[str, Any] = {}
    injector = None
    if plan_of.fault is not None and isinstance(sut, Topology):
        at = args.fault_at if args.fault_at is not None else ramp_s + args.duration / 3
        injector = threading.Thread(target=_inject, args=(plan_of.fault, sut, at, fault), daemon=True)
        injector.start()
    last, peak = _watch_until_done(master, sut, [master, *worker_procs], ramp_s + args.duration)
    wall = time.monotonic() - started
    for proc in worker_procs:
        proc.stop()
    if injector is not None:
        injector.join(timeout=5)
    return {"requests": _requests(results / "locust.json"), "parley": _read_json(results / "parley-summary.json"),
            "fault": fault or None, "usage": usage.usage_json(usage.role_usage(before, last, wall), wall, None),
            "rss_before_mib": _rss_by_role(before), "rss_peak_mib": _rss_by_role(peak),
            "locust_exit_code": master.exited()}


def _inject(kind: str, topology: Topology, at_s: float, out: dict[str, Any]) -> None:
    time.sleep(at_s)
    try:
        out.update(faults.kill_gateway(topology.document) if kind == "kill"
                   else faults.rolling_restart(topology.document, settle_s=5.0))
    except (OSError, TimeoutError, IndexError) as exc:
        out["error"] = repr(exc)


def _watch_until_done(master: ChildProcess, sut: ServerUnderTest | None, locusts: list[ChildProcess],
                      expected_s: float) -> tuple[list[usage.ProcSample], list[usage.ProcSample]]:
    """Sample CPU and RSS every 2 s until the master exits; returns the last samples (CPU up to
    the end) and those with the most server RSS (what holding the sessions costs)."""
    last: list[usage.ProcSample] = []
    peak: list[usage.ProcSample] = []
    deadline = time.monotonic() + expected_s + 120
    while master.exited() is None and time.monotonic() < deadline:
        last = _snapshot(sut, locusts) or last
        if _server_rss(last) >= _server_rss(peak):
            peak = last
        time.sleep(2.0)
    if master.exited() is None:
        master.stop()
    return last, peak


def _server_rss(samples: list[usage.ProcSample]) -> int:
    return sum(s.rss for s in samples if s.role != usage.BENCH_ROLE)


def _rss_by_role(samples: list[usage.ProcSample]) -> dict[str, float]:
    out: dict[str, float] = {}
    for s in samples:
        out[s.role] = round(out.get(s.role, 0.0) + s.rss / 2**20, 1)
    return out


def _snapshot(sut: ServerUnderTest | None, locusts: list[ChildProcess]) -> list[usage.ProcSample]:
    samples = sut.snapshot() if sut is not None else []
    if usage.psutil is not None:
        for proc in locusts:
            if proc.pid is not None and proc.exited() is None:
                member = usage.Member(proc.name, usage.BENCH_ROLE, proc.pid)
                try:
                    one = usage.sample(usage.psutil.Process(proc.pid), member)
                except usage.psutil.Error:
                    one = None
                if one is not None:
                    samples.append(one)
    return samples


def _requests(path: Path) -> dict[str, dict[str, Any]]:
    """Locust's final stats per request name: count, failures, percentiles (from its histogram)."""
    out: dict[str, dict[str, Any]] = {}
    for entry in _read_json(path) or []:
        times = {float(k): int(v) for k, v in entry.get("response_times", {}).items()}
        out[entry["name"]] = {
            "count": entry["num_requests"], "failures": entry["num_failures"],
            "p50_ms": _percentile(times, 50), "p95_ms": _percentile(times, 95), "p99_ms": _percentile(times, 99),
            "max_ms": entry.get("max_response_time"),
            "per_s": entry["num_requests"] / max(1e-9, entry["last_request_timestamp"] - entry["start_time"])
            if entry.get("last_request_timestamp") else None,
        }
    return out


def _percentile(histogram: dict[float, int], p: float) -> float | None:
    total = sum(histogram.values())
    if total == 0:
        return None
    rank, seen = math.ceil(total * p / 100), 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= rank:
            return value
    return max(histogram)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _machine() -> dict[str, Any]:
    mem = None
    if usage.psutil is not None:
        mem = round(usage.psutil.virtual_memory().total / 2**30, 1)
    return {"host": platform.node(), "cpus": os.cpu_count(), "memory_gib": mem, "python": platform.python_version(),
            "kernel": platform.release(), "open_files_limit": _nofile()}


def _nofile() -> int | None:
    try:
        import resource
    except ImportError:
        return None
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


if __name__ == "__main__":
    sys.exit(main())
