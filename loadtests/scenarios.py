"""The scenarios: `idle` (sessions held, RSS per session) and `groups` / `ramp` (open-loop sends
in groups at one rate or at rising rates), each writing its lines of the report.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from loadtests.profiling import Profiler
from loadtests.report import mib, ms, pct, pct_line
from loadtests.runtime import NS, log
from loadtests.server import ServerUnderTest
from loadtests.slices import SliceHandle, StepPlan, build_slices, connect_all
from loadtests.stats import merge_steps, step_is_good
from loadtests.watch import ServerWatch
from parley.sdk import Account

#: Send lag p99 above this: the generator fell behind its own schedule, so its delay is part of
#: the latency measured (honestly: from the due time), and the report says so.
GENERATOR_LAG_WARN_MS = 25.0


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
    slices = build_slices(server.url, [a.token for a in accounts], None, args.procs,
                          args.connect_concurrency, args.text_bytes)
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
    run.say(f"{server.rss_label:<11}: {mib(before)} before -> {mib(after_connect)} connected -> "
            f"{mib(after)} after the hold")
    if per is not None:
        if args.sessions < 10_000:
            verdict = "the target is for 10,000 sessions"
        else:
            verdict = "MET" if per <= 20 * 1024 and held >= 10_000 else "MISSED"
        whose = " of the gateways" if run.topology else ""
        run.say(f"per session: {per / 1024:.1f} KiB{whose}  (target: 10,000 held at <= 20 KiB each: {verdict})")
    run.say(f"server CPU : {pct(watch.cpu_pct)} while holding (heartbeats); machine busy "
            f"{pct(watch.machine_busy_pct)}, load average {os.getloadavg()[0]:.1f}")
    run.say(f"generator  : RSS {mib(run.report['generator_rss'])}")
    for line in watch.lines(None, run.topology):
        run.say(line)


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
    run.say(f"latency ms : {pct_line(m['latency_ms'])}  (send -> each member's receipt, "
            f"n={m['receipts_timed']})")
    run.say(f"ack ms     : {pct_line(m['ack_ms'])}")
    run.say(f"lost       : {m['lost']} messages ({m['missing_receipts']} receipts missing); "
            f"sessions dropped: {m['sessions_dropped']}")
    run.say(f"generator  : CPU {m['generator_cpu_pct']:.0f}% of a core, send lag "
            f"{pct_line(m['send_lag_ms'])}")
    rss = m["server_rss_max"]
    per = f" = {rss / connections / 1024:.1f} KiB per connection" if rss and connections else ""
    grow = ""
    if rss and baseline is not None and connections:
        grow = f" (+{(rss - baseline) / connections / 1024:.1f} KiB per connection over the idle server)"
    loops = "event-loop threads, summed" if run.topology else "event-loop thread"
    run.say(f"server     : CPU {pct(m['server_cpu_pct'])} ({loops} "
            f"{pct(m['server_loop_thread_cpu_pct'])}), {'gateway RSS' if run.topology else 'RSS'} {mib(rss)}{per}{grow}")
    run.say(f"noise      : other processes used {pct(m.get('other_cpu_pct'))} of a core during the "
            f"window (machine busy {pct(m['machine_busy_pct'])} of {os.cpu_count()} cores, "
            f"load average {m['loadavg_1m']:.1f})")
    if m["generator_behind"]:
        run.say(f"warning    : the generator fell behind its schedule (send lag p99 "
                f"{ms(m['send_lag_ms']['p99'])} ms): the latency includes its delay; try --procs 2")
    for line in watch_lines:
        run.say(line)


async def scenario_groups(run: Run, accounts: list[Account], groups: list[tuple[str, list[int]]],
                          rates: list[float]) -> None:
    args, server = run.args, run.server
    baseline = await settle_rss(server, 2.0)
    slices = build_slices(server.url, [a.token for a in accounts], groups, args.procs,
                          args.connect_concurrency, args.text_bytes)
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
        profiler = Profiler.start(args, server.pid, run.topology)
        for step, rate in enumerate(rates):
            log(f"step {step}: {rate:.0f} sends/s, warmup {args.warmup:.0f} s, measure {args.duration:.0f} s")
            m, watch_lines = await run_groups_step(run, slices, conn["connected"], rate, step)
            m["step"] = step
            step_lines.append(watch_lines)
            good = step_is_good(m, args.p99_ms)
            m["good"] = good
            results.append(m)
            log(f"step {step}: {rate:.0f}/s -> acked {m['sends_acked_per_s']:.0f}/s, p99 "
                f"{ms(m['latency_ms']['p99'])} ms, lost {m['lost']}, errors {m['errors'] or 0}: "
                f"{'good' if good else 'BAD'}")
            if args.scenario == "ramp" and not good:
                break
            if step + 1 < len(rates):
                await asyncio.sleep(args.pause)
        if profiler is not None:
            profile_lines = await profiler.finish()
            if profile_lines:
                run.report["profile"] = profiler.path
            for line in profile_lines:
                run.say(line)
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
                f"{ms(lat['p50']):>6} {ms(lat['p95']):>6} {ms(lat['p99']):>6} {ms(lat['max']):>6} "
                f"{m['lost']:>5} {errs:>7} {pct(m['server_cpu_pct']):>6} "
                f"{pct(m['server_loop_thread_cpu_pct']):>5} {m['generator_cpu_pct']:>5.0f}% "
                f"{ms(m['send_lag_ms']['p99']):>6} {pct(m.get('other_cpu_pct')):>5}  "
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
