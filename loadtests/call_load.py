"""The `calls` scenario: N users connected, half of them calling the other half (disjoint pairs,
one direct conversation each) at R call starts/s in total, open loop (a start is due at its time
whatever the answers of the others). Measured: `call.start` sent -> `call.ringing` received on the
callee's device (p99 against the target), and `call.start` sent -> its `ok`. Each caller hangs up
half a second after its `ok` (the call ends missed, leaves its record and closes its room), so a
pair is free again long before its next call.
"""

from __future__ import annotations

import array
import asyncio
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
import aiohttp

from loadtests.report import ms, pct, pct_line
from loadtests.runtime import NS, log
from loadtests.scenarios import Run
from loadtests.stats import percentiles
from loadtests.watch import ServerWatch
from parley.errors import ParleyError
from parley.sdk import Account, AiohttpTransport, Client, Frame

#: A caller hangs up this long after its start's ok (the callee never answers).
HANG_UP_AFTER_S = 0.5
CONNECT_CONCURRENCY = 100


async def create_pairs(url: str, accounts: Sequence[Account]) -> tuple[list[tuple[int, int, str]], float]:
    """(caller, callee, direct conversation) for the first half calling the second."""
    started = time.monotonic()
    half = len(accounts) // 2
    gate = asyncio.Semaphore(32)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def one(i: int) -> tuple[int, int, str]:
            async with gate:
                async with await Client.connect(url, accounts[i].token, transport=AiohttpTransport(http),
                                                heartbeat=False, on_event=lambda _: None) as client:
                    reply = await client.request("conv.create", timeout=60.0, kind="direct",
                                                 members=[accounts[i + half].user_id])
                    return i, i + half, str(reply["conv"]["id"])

        pairs = await asyncio.gather(*(one(i) for i in range(half)))
    return list(pairs), time.monotonic() - started


@dataclass
class CallTimes:
    """When each start went out and was answered, and when each call rang, by call id."""

    sent_ns: dict[int, int] = field(default_factory=dict)  # start number -> sent
    call_of: dict[int, str] = field(default_factory=dict)  # start number -> call id
    ok_ns: dict[int, int] = field(default_factory=dict)
    rang_ns: dict[str, int] = field(default_factory=dict)  # call id -> first ringing on the callee
    errors: dict[str, int] = field(default_factory=dict)


async def scenario_calls(run: Run, accounts: list[Account], pairs: list[tuple[int, int, str]]) -> None:
    args, server = run.args, run.server
    times = CallTimes()
    clients: dict[int, Client] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        transport = AiohttpTransport(http)
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        def callee_hook(frame: Frame) -> None:
            if frame.get("type") == "call.ringing" and frame.get("ringing"):
                times.rang_ns.setdefault(str(frame["call"]), time.monotonic_ns())

        async def connect(i: int, callee: bool) -> None:
            async with gate:
                clients[i] = await Client.connect(server.url, accounts[i].token, transport=transport,
                                                  device_id=f"bench-{i}",
                                                  on_event=callee_hook if callee else lambda _: None)

        started = time.monotonic()
        await asyncio.gather(*(connect(i, callee) for caller, callee_i, _ in pairs
                               for i, callee in ((caller, False), (callee_i, True))))
        log(f"{len(clients)} sessions connected in {time.monotonic() - started:.1f} s")
        try:
            await asyncio.sleep(1.0)
            total = int(args.rate * (args.warmup + args.duration))
            t0 = time.monotonic_ns() + NS // 2
            win_start, win_end = t0 + int(args.warmup * NS), t0 + int((args.warmup + args.duration) * NS)
            watch = ServerWatch(server)
            watcher = asyncio.create_task(watch.watch(win_start, win_end))
            calls = [asyncio.create_task(_one_call(clients[pairs[k % len(pairs)][0]], pairs[k % len(pairs)][2], k,
                                                   t0 + int(k * NS / args.rate), times))
                     for k in range(total)]
            await asyncio.gather(*calls)
            await watcher
            await asyncio.sleep(args.grace)  # late ringings, and the last hang-ups
        finally:
            await asyncio.gather(*(c.close() for c in clients.values()), return_exceptions=True)
    _report(run, times, watch, win_start, win_end)


async def _one_call(caller: Client, conv: str, k: int, due_ns: int, times: CallTimes) -> None:
    await asyncio.sleep(max(0, due_ns - time.monotonic_ns()) / NS)
    times.sent_ns[k] = time.monotonic_ns()
    try:
        reply = await asyncio.wait_for(await caller.submit("call.start", conv=conv, media="audio"), 30)
    except (ParleyError, TimeoutError) as err:
        code = getattr(err, "code", "timeout")
        times.errors[code] = times.errors.get(code, 0) + 1
        return
    times.ok_ns[k] = time.monotonic_ns()
    call = str(reply["call"]["id"])
    times.call_of[k] = call
    await asyncio.sleep(HANG_UP_AFTER_S)
    try:
        await caller.request("call.leave", call=call, timeout=30)
    except (ParleyError, TimeoutError) as err:
        code = f"leave {getattr(err, 'code', 'timeout')}"
        times.errors[code] = times.errors.get(code, 0) + 1


def _report(run: Run, times: CallTimes, watch: ServerWatch, win_start: int, win_end: int) -> None:
    args = run.args
    in_window = [k for k, sent in times.sent_ns.items() if win_start <= sent < win_end]
    ring_us: array.array[int] = array.array("q")
    ok_us: array.array[int] = array.array("q")
    missing = 0
    for k in in_window:
        if k in times.ok_ns:
            ok_us.append((times.ok_ns[k] - times.sent_ns[k]) // 1000)
        rang = times.rang_ns.get(times.call_of.get(k, ""))
        if rang is None:
            missing += 1
        else:
            ring_us.append((rang - times.sent_ns[k]) // 1000)
    ring, ok = percentiles(ring_us), percentiles(ok_us)
    good = ring["p99"] is not None and ring["p99"] <= args.p99_ms and not missing and not times.errors
    run.report.update({"calls_in_window": len(in_window), "call_starts_per_s": len(in_window) / args.duration,
                       "machine_busy_pct": watch.machine_busy_pct, "loadavg_1m": os.getloadavg()[0],
                       "ringing_ms": ring, "start_ok_ms": ok, "ringing_missing": missing,
                       "errors": times.errors, "server_cpu_pct": watch.cpu_pct,
                       "server_loop_thread_cpu_pct": watch.loop_cpu_pct, "server_rss_max": watch.rss_max,
                       "good": good})
    run.say(f"call starts: {len(in_window)} in the window = {len(in_window) / args.duration:.1f}/s "
            f"(target {args.rate:g}/s)")
    run.say(f"ringing ms : {pct_line(ring)}  (call.start sent -> call.ringing on the callee's device, "
            f"n={len(ring_us)})")
    run.say(f"start ok ms: {pct_line(ok)}")
    run.say(f"missing    : {missing} calls never rang; errors: {times.errors or 'none'}")
    run.say(f"server     : CPU {pct(watch.cpu_pct)} (event-loop thread {pct(watch.loop_cpu_pct)})")
    run.say(f"noise      : machine busy {pct(watch.machine_busy_pct)} of {os.cpu_count()} cores during the window, "
            f"load average {os.getloadavg()[0]:.1f}")
    for line in watch.lines(None, run.topology):
        run.say(line)
    run.say(f"verdict    : p99 <= {args.p99_ms:.0f} ms, every call rang, no errors, at {args.rate:g} call "
            f"starts/s: {'MET' if good else 'MISSED'} (ringing p99 {ms(ring['p99'])} ms)")

