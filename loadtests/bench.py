"""The Parley benchmark: an open-loop asyncio (uvloop) load generator that speaks the v1 protocol
through the SDK (`parley.sdk`) and measures a `parley dev` server.

Scenarios:
  idle    N sessions connect, say hello and stay; server RSS per session.
  calls   C sessions, half calling the other half at R call starts/s (default 50), open loop;
          call.start -> call.ringing on the callee's device, p99 (target 100 ms). The bench
          starts the LiveKit stand-in of tests/ as the server's LiveKit (run from a checkout).
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
import datetime as dt
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from loadtests.accounts import ACCOUNTS_FILE, AccountCache, create_groups, register_users
from loadtests.call_load import create_pairs, scenario_calls
from loadtests.report import code_version, machine
from loadtests.runtime import log, raise_nofile, run_loop
from loadtests.scenarios import Run, scenario_groups, scenario_idle
from loadtests.server import Server, ServerUnderTest, start_server
from parley.app.processes import ChildProcess, free_port, http_ok

#: The server's default per-user send limit is 100 per 5 s; above this per-user rate the
#: benchmark would measure the limiter, so it lifts the limit on a server it starts.
DEFAULT_USER_RATE_LIMIT = 20.0
DEFAULT_RAMP = "200,300,400,500,600,700,800,900,1000,1200,1500"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m loadtests.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", nargs="?", choices=("idle", "groups", "ramp", "calls"), default="groups")
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
    p.add_argument("--rate", "-r", type=float,
                   help="groups: sends/s in total (default 500); calls: call starts/s (default 50)")
    p.add_argument("--rates", default=DEFAULT_RAMP, help=f"ramp: sends/s per step (default {DEFAULT_RAMP})")
    p.add_argument("--duration", "-d", type=float, help="measured seconds per step (default 30; idle: hold 65)")
    p.add_argument("--warmup", "-w", type=float, default=5.0, help="unmeasured seconds first (default 5)")
    p.add_argument("--grace", type=float, default=10.0, help="seconds to wait for late receipts (default 10)")
    p.add_argument("--pause", type=float, default=3.0, help="ramp: seconds between steps (default 3)")
    p.add_argument("--p99-ms", type=float, help="p99 target (default: 150 for groups, 250 for ramp, 100 for calls)")
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
        args.p99_ms = {"groups": 150.0, "calls": 100.0}.get(scenario, 250.0)
    if args.rate is None:
        args.rate = 50.0 if scenario == "calls" else 500.0
    rates = [args.rate] if scenario == "groups" else [float(r) for r in args.rates.split(",") if r]
    users = args.sessions if scenario == "idle" else args.connections
    report: dict[str, Any] = {
        "scenario": scenario, "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine(), "code": code_version(), "knobs": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    lines = [f"Parley benchmark: {scenario}", f"code       : {report['code']}"]
    # Every bench account registers from this one IP: the per-IP auth limit would stop it. Slice
    # processes connect with bare access tokens (they refresh nothing): a day outlasts any run.
    env: dict[str, str] = {"PARLEY_IP_AUTH_BURST": "0", "PARLEY_TOKEN_TTL_S": str(24 * 3600)}
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
    livekit: ChildProcess | None = None
    if scenario == "calls":
        livekit, lk_env = start_livekit()
        env.update(lk_env)
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
        elif scenario == "calls":
            lines.append(f"knobs      : connections={args.connections} ({args.connections // 2} callers) "
                         f"call starts={args.rate:g}/s warmup={args.warmup:g}s duration={args.duration:g}s "
                         f"p99 target={args.p99_ms:g}ms")
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
        pairs: list[tuple[int, int, str]] = []
        if scenario == "calls":
            pairs, pair_s = await create_pairs(server.url, accounts)
            setup += f", {len(pairs)} direct conversations ({pair_s:.1f} s)"
        elif scenario != "idle":
            groups, grp_s = await create_groups(server.url, accounts, args.group)
            setup += f", {len(groups)} groups ({grp_s:.1f} s)"
        if server.data_dir is not None and not args.no_restart and (reg_s or groups or pairs):
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
        elif scenario == "calls":
            await scenario_calls(run, accounts, pairs)
        else:
            await scenario_groups(run, accounts, groups, rates)
    finally:
        await server.stop()
        if livekit is not None:
            livekit.stop()
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


def start_livekit() -> tuple[ChildProcess, dict[str, str]]:
    """The LiveKit stand-in of tests/ in a process of its own, and the server's settings for it."""
    port = free_port()
    url, key, secret = f"http://127.0.0.1:{port}", "APIbench", "a-bench-livekit-secret-of-32-chars!"
    standin = ChildProcess("livekit stand-in", [sys.executable, "-m", "tests.livekit_standin", "--port", str(port),
                                                "--key", key, "--secret", secret],
                           Path(tempfile.gettempdir()) / f"parley-bench-livekit-{port}.log",
                           ready=http_ok(url + "/healthz"), ready_timeout_s=30.0, stop_timeout_s=10.0, poll_s=0.1)
    standin.spawn()
    standin.wait_ready()
    return standin, {"PARLEY_LIVEKIT_URL": url, "PARLEY_LIVEKIT_API_KEY": key, "PARLEY_LIVEKIT_API_SECRET": secret}


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.url and args.topology != "dev":
        parser.error("--topology up starts its own topology: not with --url")
    raise_nofile()
    try:
        report, lines = run_loop(main_async(args))
    except KeyboardInterrupt:  # the server it started was stopped on the way out
        log("interrupted")
        return 130
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
