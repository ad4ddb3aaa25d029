"""CPU time per push of one push worker: run `python -m loadtests.push_cpu` from a checkout.

Throughput and latency need a quiet machine; CPU time per push does not (a busy machine makes
it a little worse, not meaningless). This runs the product's PushWorker as `parley run push`
does, one batch after another: each push request decoded from its JSON record (what the Kafka
consumer does), checked against and added to the sent marks (in memory, or in a Redis with
`--redis`, as the scale-out worker does), collapsed, rate limited, sent through the FCM pushkin
(firebase-admin) or with `--provider apns` the APNs one (aioapns) to the stand-in in a process
of its own, and settled. It reports this
process's CPU time (user + system) per push, and with `--profile FILE` where it went (cProfile:
the stats file, and the top functions printed).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from loadtests.push_bench import pushkin_for, requests_for, standins
from parley.adapters.redis_state import connect_redis
from parley.app import localservers
from push.marks import MemorySentMarks, RedisSentMarks, SentMarks
from push.notification import PushRequest
from push.sender import Provider
from push.retry import RetryPolicy
from push.worker import DeviceRateLimit, LoggedDeadLetters, PushWorker


class NoDevices:
    """The device store of a run whose tokens are all alive: nothing is pruned."""

    async def delete_device(self, user_id: str, device_id: str) -> bool:
        raise AssertionError(f"the stand-in called {device_id} dead")


class Records:
    """The batches as the log hands them to the worker: JSON records, decoded one by one."""

    def __init__(self, records: list[bytes], batch: int) -> None:
        self._batches = [records[i:i + batch] for i in range(0, len(records), batch)]
        self._decode = msgspec.json.Decoder(PushRequest).decode

    def __len__(self) -> int:
        return len(self._batches)

    def next_batch(self) -> list[PushRequest]:
        return [self._decode(record) for record in self._batches.pop(0)]


async def measure(where: dict[str, Any], marks: SentMarks, *, provider: Provider, count: int, batch: int,
                  profile: cProfile.Profile | None) -> tuple[float, float]:
    """CPU seconds of this process (user, system) for `count` distinct pushes, after a warm-up
    batch."""
    pushkin = pushkin_for(provider, where, 10.0)
    worker = PushWorker(None, {provider: pushkin}, RetryPolicy(attempts=3), NoDevices(),  # type: ignore[arg-type]
                        LoggedDeadLetters(), marks, DeviceRateLimit(10**9), batch_max=batch)
    try:
        encode = msgspec.json.Encoder().encode
        warm, measured = requests_for(provider, batch), requests_for(provider, batch + count)[batch:]
        await settle_all(worker, Records([encode(r) for r in warm], batch))  # OAuth token, connections
        records = Records([encode(r) for r in measured], batch)
        if profile is not None:
            profile.enable()
        before = os.times()
        await settle_all(worker, records)
        after = os.times()
        if profile is not None:
            profile.disable()
        return after.user - before.user, after.system - before.system
    finally:
        await pushkin.close()


async def settle_all(worker: PushWorker, records: Records) -> None:
    while len(records):
        delivery = await worker.settle(records.next_batch())
        assert not (delivery.failed or delivery.dead or delivery.pruned), delivery


async def run(where: dict[str, Any], args: argparse.Namespace,
              profile: cProfile.Profile | None) -> tuple[float, float]:
    if not args.redis:
        return await measure(where, MemorySentMarks(3600), provider=args.provider, count=args.count,
                             batch=args.batch, profile=profile)
    with tempfile.TemporaryDirectory() as directory:
        server = localservers.redis_server(Path(directory))
        server.start()
        redis = connect_redis(server.url)
        try:
            return await measure(where, RedisSentMarks(redis, 3600), provider=args.provider, count=args.count,
                                 batch=args.batch, profile=profile)
        finally:
            await redis.aclose()
            server.stop()


def top(profile: cProfile.Profile, n: int) -> str:
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(n)
    return out.getvalue()


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m loadtests.push_cpu", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--provider", choices=["fcm", "apns"], default="fcm", help="the stand-in sent to (default fcm)")
    p.add_argument("--count", type=int, default=10_000, help="distinct pushes measured (default 10000)")
    p.add_argument("--batch", type=int, default=500, help="pushes per batch the worker takes (default 500)")
    p.add_argument("--redis", action="store_true", help="sent marks in a Redis of its own (the scale-out worker's)")
    p.add_argument("--profile", metavar="FILE", help="cProfile the measured part into FILE and print its top")
    args = p.parse_args(argv)
    # CPU time, not cProfile's default wall clock: on a busy machine the wall clock also counts
    # the time the process waited for a core, wherever it happened to be.
    profile = cProfile.Profile(time.process_time) if args.profile else None
    with standins() as (where, _):
        import uvloop
        user, system = uvloop.run(run(where, args, profile))
    marks = "Redis" if args.redis else "in-memory"
    print(f"push worker CPU: {1e6 * (user + system) / args.count:,.0f} us per push (user "
          f"{1e6 * user / args.count:,.0f}, system {1e6 * system / args.count:,.0f}; {args.count} distinct "
          f"{args.provider} pushes in batches of {args.batch}, {marks} sent marks)")
    if profile is not None:
        profile.dump_stats(args.profile)
        print(top(profile, 30))


if __name__ == "__main__":
    main()
