"""Push end to end: stored message -> push decision -> push worker -> FCM stand-in, at a given
push rate. Run `python -m loadtests.push_pipeline_bench` from a checkout.

`--system dev` (the default): `parley dev`'s app runs in this process (SQLite, the decision and
the worker in-process, as in `parley dev`), on uvloop. `--system up`: `parley up` runs as a
subprocess (the push role a process of its own, running the decision and the worker, fed by
Kafka (tansu) behind the gateways, chat-core and delivery, with NATS and Redis), registered with
and sent to over HTTP and WebSocket. The FCM stand-in runs in a process of its own either way.
A group of `--members` offline members, each with an Android device, gets messages from one
sender at `--rate / --members` messages a second, so the worker is asked for `--rate` pushes a
second.
Reports the pushes the stand-in accepted per second, and the worker's histogram of stored
message -> provider answer (p50, p99: the upper bound of the bucket they fall in) and of decision
-> provider answer (on `up`, scraped from the push worker's `/metrics` before and after), with
the CPU of the stand-in and of the server: on `dev` this process's and its event loop thread's
alone (the store's SQLite work runs in others), on `up` each role's (every process of
topology.json: push, delivery, chat-core, gateway, the brokers) and their total.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import psutil

from loadtests.push_bench import standins
from loadtests.push_pipeline_systems import SYSTEMS, Buckets, PushSystem, cpu_s, percent
from parley.sdk import Client, register, register_device

PASSWORD = "correct horse"


def quantile(q: float, before: Buckets, after: Buckets) -> float:
    """The upper bound of the bucket holding quantile `q` of what was observed between two
    readings of a histogram's cumulative buckets."""
    since = [(bound, count - earlier) for (bound, count), (_, earlier) in zip(after, before)]
    total = since[-1][1]
    return next(bound for bound, count in since if count >= q * total)


async def bench(system: PushSystem, standin: psutil.Process, *, members: int, rate: float,
                seconds: float) -> dict[str, Any]:
    url, transport = system.base_url, system.transport
    sender = await register(url, "sender", PASSWORD, transport=transport)
    ids = []
    for i in range(members):
        member = await register(url, f"member{i}", PASSWORD, transport=transport)
        await register_device(url, member.token, "fcm", f"bench{i}:APA91b" + "x" * 140, "chat.parley.android",
                              transport=transport)
        ids.append(member.user_id)
    async with await Client.connect(url, sender, transport=transport) as client:
        conv = (await client.request("conv.create", kind="group", title="Bench", members=ids))["conv"]["id"]
        await client.send(conv, "warm-up")  # connections and OAuth token: not measured
        while await system.sent() < members:
            await asyncio.sleep(system.poll_s)
        before = await system.counts()
        system.start_cpu_window()
        standin0 = cpu_s(standin)
        started = time.monotonic()
        every = members / rate
        messages = int(seconds / every)
        sends = []
        for n in range(messages):
            await asyncio.sleep(max(0.0, started + n * every - time.monotonic()))
            sends.append(asyncio.create_task(client.send(conv, f"message {n}")))
        await asyncio.gather(*sends)
        # Until nothing more is sent for a second (pushes that collapsed into a newer one
        # of the same conversation are never sent: the asked total is not reached).
        last, last_change = await system.sent(), time.monotonic()
        while time.monotonic() - last_change < 1.0:
            await asyncio.sleep(system.poll_s)
            if (now := await system.sent()) != last:
                last, last_change = now, time.monotonic()
        elapsed = last_change - started
        after = await system.counts()
        sent = after.sent - before.sent
        return {"asked_pushes_per_s": rate, "members": members, "messages": messages,
                "pushes_sent": int(sent), "pushes_per_s": round(sent / elapsed),
                "retried": after.retried, "rate_limited": after.rate_limited,
                "duplicates_skipped": after.duplicates,
                "p50_s": quantile(0.5, before.stored_to_provider, after.stored_to_provider),
                "p99_s": quantile(0.99, before.stored_to_provider, after.stored_to_provider),
                "decided_p50_s": quantile(0.5, before.decision_to_provider, after.decision_to_provider),
                "decided_p99_s": quantile(0.99, before.decision_to_provider, after.decision_to_provider),
                **system.cpu_report(elapsed),
                "standin_cpu": percent(cpu_s(standin) - standin0, elapsed)}


async def run(system: str, where: dict[str, Any], standin: psutil.Process, *, members: int, rate: float,
              seconds: float) -> dict[str, Any]:
    """`system` ("dev" or "up") started against the stand-ins at `where`, benched, stopped."""
    async with SYSTEMS[system](where) as under_test:
        return await bench(under_test, standin, members=members, rate=rate, seconds=seconds)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m loadtests.push_pipeline_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--system", choices=sorted(SYSTEMS), default="dev",
                   help="parley dev's app in this process, or parley up as a subprocess (default dev)")
    p.add_argument("--members", type=int, default=100, help="offline members with a device (default 100)")
    p.add_argument("--rate", type=float, default=1000, help="pushes asked per second (default 1000)")
    p.add_argument("--seconds", type=float, default=20, help="how long to send (default 20)")
    args = p.parse_args()
    with standins() as (where, standin):
        import uvloop
        print(uvloop.run(run(args.system, where, standin, members=args.members, rate=args.rate,
                             seconds=args.seconds)))


if __name__ == "__main__":
    main()
