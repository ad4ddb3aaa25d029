"""CPU per `conv.invite` chunk as a channel grows: `parley dev`'s app in this process (SQLite, every
stage in-process), a channel whose owner invites `--chunk` users at a time up to `--members`, and
waits for each chunk's `member.joined` events as loadtests/locust/prepare.py does. Reports the
process CPU seconds (user + system, not wall time: the machine may be busy) per chunk at the
channel sizes asked for, and optionally a cProfile of one chunk.

    python -m loadtests.invite_bench --members 20000 --report-at 1000,5000,10000,20000 \
        [--profile-at 20000 --profile-out invite.prof]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import tempfile
import time
from pathlib import Path

from parley.app.embedded import build_app
from parley.app.loadtest_users import NO_PASSWORD
from parley.app.stores import open_store
from parley.config import Settings
from parley.ids import new_user_id
from parley.limits import Limits
from parley.sdk import AppTransport, Client, register

BASE_URL = "http://parley.in-process"
#: Accounts created per store call batch (SQLite writes them in turn; this bounds the gather).
CREATE_AT_ONCE = 64


async def create_users(settings: Settings, count: int) -> list[str]:
    """`count` accounts straight in the store, as `parley admin loadtest-users` makes them."""
    store = await open_store(settings)
    try:
        ids = [new_user_id() for _ in range(count)]
        at = int(time.time() * 1000)
        for start in range(0, count, CREATE_AT_ONCE):
            await asyncio.gather(*(store.create_user(user, f"inv-{start + n}", NO_PASSWORD, at)
                                   for n, user in enumerate(ids[start:start + CREATE_AT_ONCE])))
        return ids
    finally:
        await store.close()


async def bench(members: int, chunk: int, report_at: set[int], profile_at: int | None,
                profile_out: Path | None) -> list[tuple[int, float]]:
    """(members after the chunk, CPU seconds of the chunk) for each chunk that takes the channel
    past a size in `report_at`."""
    with tempfile.TemporaryDirectory() as directory:
        # No fsync per transaction: CPU is measured, not durability.
        settings = Settings(data_dir=Path(directory), sqlite_synchronous="NORMAL", limits=Limits(ip_auth_burst=0))
        users = await create_users(settings, members - 1)
        app = AppTransport(await build_app(settings))
        await app.start()
        try:
            owner = await register(BASE_URL, "owner", "correct horse", transport=app)
            async with await Client.connect(BASE_URL, owner, transport=app, heartbeat=False) as client:
                reply = await client.request("conv.create", kind="channel", title="invite bench")
                conv = str(reply["conv"]["id"])
                out: list[tuple[int, float]] = []
                for start in range(0, len(users), chunk):
                    part = users[start:start + chunk]
                    size = 1 + start + len(part)
                    passes = {r for r in report_at if size - len(part) < r <= size}
                    profiler = cProfile.Profile() if profile_at is not None and size - len(part) < profile_at <= size \
                        else None
                    cpu0 = time.process_time()
                    if profiler is not None:
                        profiler.enable()
                    await client.request("conv.invite", timeout=600.0, conv=conv, users=part)
                    for _ in part:
                        await client.next_event("member.joined", conv=conv, timeout=600.0)
                    if profiler is not None:
                        profiler.disable()
                    spent = time.process_time() - cpu0
                    if profiler is not None and profile_out is not None:
                        profiler.dump_stats(profile_out)
                        pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
                    if passes:
                        out.append((size, spent))
                        print(f"members {size:>7}: {spent * 1000:8.0f} ms CPU for {len(part)} invited "
                              f"({spent / len(part) * 1e6:6.0f} us per member)", flush=True)
                return out
        finally:
            await app.aclose()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--members", type=int, default=20_000, help="the channel's size at the end, owner included")
    ap.add_argument("--chunk", type=int, default=1000, help="users per conv.invite")
    ap.add_argument("--report-at", default="1000,5000,10000,20000",
                    help="channel sizes (after a chunk) whose chunk's CPU is printed")
    ap.add_argument("--profile-at", type=int, default=None, help="cProfile the chunk that ends at this size")
    ap.add_argument("--profile-out", type=Path, default=None, help="where the profile's stats are dumped")
    args = ap.parse_args(argv)
    report_at = {int(n) for n in args.report_at.split(",") if n}
    asyncio.run(bench(args.members, args.chunk, report_at, args.profile_at, args.profile_out))


if __name__ == "__main__":
    main()
