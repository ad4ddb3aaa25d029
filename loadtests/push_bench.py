"""Pushes per second one provider client (pushkin) sustains against the stand-ins: run
`python -m loadtests.push_bench` from a checkout (the stand-ins live in tests/).

The stand-ins (FCM HTTP v1 and APNs, both HTTP/2 over TLS) run in a process of their own;
this process runs the product's FcmPushkin and ApnsPushkin (firebase-admin, aioapns) on
uvloop, sending message pushes in batches, several batches at once. Prints pushes/s and the
CPU each side used, so a run shows which side was the limit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from push.notification import PushRequest
from push.providers import Pushkin
from push.providers.apns import ApnsPushkin
from push.providers.fcm import FcmPushkin, fcm_app

ROOT = Path(__file__).resolve().parent.parent
APNS_TOPIC = "chat.parley.standin"  # the stand-in's bundle id (tests/push_standins/keys.py)


@dataclass
class Result:
    provider: str
    pushes: int
    seconds: float
    client_cpu: float
    standin_cpu: float
    outcomes: Counter[str]

    def row(self) -> str:
        return (f"| {self.provider} | {self.pushes} | {self.pushes / self.seconds:,.0f} | "
                f"{100 * self.client_cpu / self.seconds:.0f}% | {100 * self.standin_cpu / self.seconds:.0f}% | "
                f"{dict(self.outcomes)} |")


def requests_for(provider: str, n: int) -> list[PushRequest]:
    if provider == "fcm":
        return [PushRequest(user=f"u{i}", device_id=f"d{i}", platform="fcm", token=f"bench{i}:APA91b" + "x" * 140,
                            app_id="chat.parley.android", conv=f"c{i % 100}", seq=i, title="Ada",
                            body="t=000000000000;" + "x" * 48, badge=i % 10) for i in range(n)]
    return [PushRequest(user=f"u{i}", device_id=f"d{i}", platform="apns", token=f"{i:064x}", app_id=APNS_TOPIC,
                        conv=f"c{i % 100}", seq=i, title="Ada", body="t=000000000000;" + "x" * 48, badge=i % 10)
            for i in range(n)]


def pushkin_for(provider: str, where: dict[str, Any], timeout_s: float) -> Pushkin:
    if provider == "fcm":
        return FcmPushkin(fcm_app(Path(where["service_account"])), timeout_s=timeout_s, endpoint=where["fcm_url"])
    from tests.push_standins.apns import standin_client
    from tests.push_standins.keys import Tls

    tls = Tls(Path(where["ca"]), Path(), Path())
    return ApnsPushkin(standin_client(where["apns_port"], Path(where["apns_key"]), tls.client_context()),
                       timeout_s=timeout_s)


async def run(provider: str, where: dict[str, Any], standin: psutil.Process, *, count: int, batch: int,
              concurrency: int, timeout_s: float) -> Result:
    pushkin = pushkin_for(provider, where, timeout_s)
    try:
        await pushkin.send(requests_for(provider, batch))  # connections and tokens: not measured
        batches = [requests[i:i + batch] for requests in [requests_for(provider, count)]
                   for i in range(0, count, batch)]
        outcomes: Counter[str] = Counter()

        async def worker() -> None:
            while batches:
                for outcome in await pushkin.send(batches.pop()):
                    outcomes[type(outcome).__name__] += 1

        me = psutil.Process()
        cpu0, standin0 = sum(me.cpu_times()[:2]), sum(standin.cpu_times()[:2])
        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.monotonic() - started
        return Result(provider, count, seconds, sum(me.cpu_times()[:2]) - cpu0,
                      sum(standin.cpu_times()[:2]) - standin0, outcomes)
    finally:
        await pushkin.close()


async def bench(args: argparse.Namespace, where: dict[str, Any], standin: psutil.Process) -> list[Result]:
    return [await run(provider, where, standin, count=args.count, batch=args.batch, concurrency=args.concurrency,
                      timeout_s=args.timeout) for provider in args.provider]


@contextlib.contextmanager
def standins() -> Iterator[tuple[dict[str, Any], psutil.Process]]:
    """Both stand-ins in a process of their own: where they are, and the process (for its CPU)."""
    with tempfile.TemporaryDirectory() as directory:
        child = subprocess.Popen([sys.executable, "-m", "tests.push_standins", directory], cwd=ROOT,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout is not None
            where = json.loads(child.stdout.readline())
            # firebase-admin's HTTP client takes no CA of its own: httpx reads SSL_CERT_FILE.
            os.environ["SSL_CERT_FILE"] = where["ca"]
            yield where, psutil.Process(child.pid)
        finally:
            assert child.stdin is not None and child.stdout is not None
            child.stdin.close()
            child.wait(10)
            child.stdout.close()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m loadtests.push_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--provider", nargs="+", choices=["fcm", "apns"], default=["fcm", "apns"])
    p.add_argument("--count", type=int, default=20_000, help="pushes per provider (default 20000)")
    p.add_argument("--batch", type=int, default=500, help="pushes per send call (default 500, FCM's most)")
    p.add_argument("--concurrency", type=int, default=4, help="send calls at once (default 4)")
    p.add_argument("--timeout", type=float, default=10.0, help="the pushkins' send timeout, s (default 10)")
    args = p.parse_args()
    with standins() as (where, standin):
        import uvloop
        results = uvloop.run(bench(args, where, standin))
    print(f"push bench: {args.count} message pushes per provider, batches of {args.batch}, "
          f"{args.concurrency} at once, stand-ins in their own process")
    print("| provider | pushes | pushes/s | client CPU | stand-in CPU | outcomes |")
    print("|---|---|---|---|---|---|")
    for result in results:
        print(result.row())


if __name__ == "__main__":
    main()
