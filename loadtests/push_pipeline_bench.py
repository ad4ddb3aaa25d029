"""Push end to end on one process: stored message -> push decision -> push worker -> FCM
stand-in, at a given push rate. Run `python -m loadtests.push_pipeline_bench` from a checkout.

`parley dev`'s app runs in this process (SQLite, the decision and the worker in-process, as in
`parley dev`), on uvloop; the FCM stand-in in a process of its own. A group of `--members`
offline members, each with an Android device, gets messages from one sender at
`--rate / --members` messages a second, so the worker is asked for `--rate` pushes a second.
Reports the pushes the stand-in accepted per second, and the worker's histogram of stored
message -> provider answer (p50, p99: the upper bound of the bucket they fall in) and of decision
-> provider answer, with the CPU of this process, of its event loop's thread alone (the store's
SQLite work runs in others) and of the stand-in.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import msgspec
import psutil
from prometheus_client import Histogram

from loadtests.push_bench import standins
from parley.app.embedded import build_app
from parley.config import Settings
from parley.limits import Limits
from parley.sdk import AppTransport, Client, register
from push.worker import DECISION_TO_PROVIDER, DUPLICATES, RATE_LIMITED, RETRIED, SENT, STORED_TO_PROVIDER

BASE_URL = "http://parley.in-process"


def buckets(histogram: Histogram = STORED_TO_PROVIDER) -> list[tuple[float, float]]:
    """A histogram's cumulative buckets: (upper bound, count)."""
    return [(float(s.labels["le"]), s.value) for metric in histogram.collect() for s in metric.samples
            if s.name.endswith("_bucket")]


def _main_thread_cpu(me: psutil.Process) -> float:
    """CPU seconds of the event loop's thread (the store's reads and writes run in others)."""
    return next(t.user_time + t.system_time for t in me.threads() if t.id == threading.get_native_id())


def quantile(q: float, before: list[tuple[float, float]], histogram: Histogram = STORED_TO_PROVIDER) -> float:
    """The upper bound of the bucket holding quantile `q` of what was observed since `before`."""
    since = [(bound, count - earlier) for (bound, count), (_, earlier) in zip(buckets(histogram), before)]
    total = since[-1][1]
    return next(bound for bound, count in since if count >= q * total)


async def bench(where: dict[str, Any], standin: psutil.Process, *, members: int, rate: float,
                seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as directory:
        settings = Settings(data_dir=Path(directory), fcm_credentials=Path(where["service_account"]),
                            fcm_endpoint=where["fcm_url"], push_device_per_minute=1_000_000,
                            limits=Limits(ip_auth_burst=0))
        app = AppTransport(await build_app(settings))
        await app.start()
        try:
            sender = await register(BASE_URL, "sender", "correct horse", transport=app)
            ids = []
            for i in range(members):
                member = await register(BASE_URL, f"member{i}", "correct horse", transport=app)
                await app.request("POST", BASE_URL + "/v1/devices", msgspec.json.encode(
                    {"platform": "fcm", "token": f"bench{i}:APA91b" + "x" * 140, "app_id": "chat.parley.android"}),
                    {"Content-Type": "application/json", "Authorization": f"Bearer {member.token}"})
                ids.append(member.user_id)
            async with await Client.connect(BASE_URL, sender, transport=app) as client:
                conv = (await client.request("conv.create", kind="group", title="Bench", members=ids))["conv"]["id"]
                await client.send(conv, "warm-up")  # connections and OAuth token: not measured
                while SENT.labels("fcm")._value.get() < members:
                    await asyncio.sleep(0.05)
                sent0 = SENT.labels("fcm")._value.get()
                before, decided_before = buckets(), buckets(DECISION_TO_PROVIDER)
                me = psutil.Process()
                cpu0, standin0 = sum(me.cpu_times()[:2]), sum(standin.cpu_times()[:2])
                main0 = _main_thread_cpu(me)
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
                last, last_change = SENT.labels("fcm")._value.get(), time.monotonic()
                while time.monotonic() - last_change < 1.0:
                    await asyncio.sleep(0.05)
                    if (now := SENT.labels("fcm")._value.get()) != last:
                        last, last_change = now, time.monotonic()
                elapsed = last_change - started
                sent = SENT.labels("fcm")._value.get() - sent0
                return {"asked_pushes_per_s": rate, "members": members, "messages": messages,
                        "pushes_sent": int(sent), "pushes_per_s": round(sent / elapsed),
                        "retried": RETRIED._value.get(), "rate_limited": RATE_LIMITED._value.get(),
                        "duplicates_skipped": DUPLICATES._value.get(),
                        "p50_s": quantile(0.5, before), "p99_s": quantile(0.99, before),
                        "decided_p50_s": quantile(0.5, decided_before, DECISION_TO_PROVIDER),
                        "decided_p99_s": quantile(0.99, decided_before, DECISION_TO_PROVIDER),
                        "process_cpu": f"{100 * (sum(me.cpu_times()[:2]) - cpu0) / elapsed:.0f}%",
                        "event_loop_cpu": f"{100 * (_main_thread_cpu(me) - main0) / elapsed:.0f}%",
                        "standin_cpu": f"{100 * (sum(standin.cpu_times()[:2]) - standin0) / elapsed:.0f}%"}
        finally:
            await app.aclose()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m loadtests.push_pipeline_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--members", type=int, default=100, help="offline members with a device (default 100)")
    p.add_argument("--rate", type=float, default=1000, help="pushes asked per second (default 1000)")
    p.add_argument("--seconds", type=float, default=20, help="how long to send (default 20)")
    args = p.parse_args()
    with standins() as (where, standin):
        import uvloop
        print(uvloop.run(bench(where, standin, members=args.members, rate=args.rate, seconds=args.seconds)))


if __name__ == "__main__":
    main()
