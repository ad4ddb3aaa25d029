"""CPU per `conv.invite` chunk as a channel grows: a channel whose owner invites `--chunk` users at
a time up to `--members`, waiting for each chunk's `member.joined` events as
loadtests/locust/prepare.py does. Reports CPU seconds (user + system, not wall time: the machine
may be busy) per chunk for the chunks that take the channel past the sizes asked for.

Embedded (default): `parley dev`'s app in this process (SQLite, every stage in-process); the CPU
is this process's, and `--profile-at` writes a cProfile of one chunk (this thread only: SQLite
reads run in the store's threads).

    python -m loadtests.invite_bench --members 20000 --report-at 1000,5000,10000,20000

A running server (e.g. `parley up`): the accounts from `parley admin loadtest-users` (the first
owns the channel), and the CPU of the server's process and all its descendants (brokers too).

    python -m loadtests.invite_bench --target http://127.0.0.1:8080 --accounts lt.json \
        --server-pid PID --members 20000
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import psutil

from loadtests.locust.plan import read_accounts
from parley.app.embedded import build_app
from parley.app.loadtest_users import NO_PASSWORD
from parley.app.stores import open_store
from parley.config import Settings
from parley.ids import new_user_id
from parley.limits import Limits
from parley.sdk import Account, AiohttpTransport, AppTransport, Client, register

BASE_URL = "http://parley.in-process"
#: Accounts created at once (SQLite writes them in turn; this bounds the gather).
CREATE_AT_ONCE = 64
#: How long one chunk's invite and its member.joined events may take.
CHUNK_TIMEOUT_S = 600.0


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


def tree_cpu(pid: int) -> Callable[[], float]:
    """CPU seconds so far of process `pid` and its descendants (those alive when asked)."""
    root = psutil.Process(pid)

    def cpu() -> float:
        total = 0.0
        for proc in [root, *root.children(recursive=True)]:
            try:
                times = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    return cpu


async def invite_in_chunks(client: Client, users: list[str], chunk: int, cpu: Callable[[], float],
                           report_at: set[int], profile_at: int | None,
                           profile_out: Path | None) -> list[tuple[int, float]]:
    """A channel of the client's user with `users` invited `chunk` at a time: (members after the
    chunk, CPU seconds of the chunk) for each chunk that takes it past a size in `report_at`."""
    reply = await client.request("conv.create", kind="channel", title="invite bench")
    conv = str(reply["conv"]["id"])
    out: list[tuple[int, float]] = []
    for start in range(0, len(users), chunk):
        part = users[start:start + chunk]
        size = 1 + start + len(part)
        profiler = cProfile.Profile() if profile_at is not None and size - len(part) < profile_at <= size else None
        cpu0 = cpu()
        if profiler is not None:
            profiler.enable()
        await client.request("conv.invite", timeout=CHUNK_TIMEOUT_S, conv=conv, users=part)
        for _ in part:
            await client.next_event("member.joined", conv=conv, timeout=CHUNK_TIMEOUT_S)
        if profiler is not None:
            profiler.disable()
        spent = cpu() - cpu0
        if profiler is not None:
            if profile_out is not None:
                profiler.dump_stats(profile_out)
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
        if any(size - len(part) < r <= size for r in report_at):
            out.append((size, spent))
            print(f"members {size:>7}: {spent * 1000:8.0f} ms CPU for {len(part)} invited "
                  f"({spent / len(part) * 1e6:6.0f} us per member)", flush=True)
    return out


async def embedded(args: argparse.Namespace, report_at: set[int]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        # No fsync per transaction: CPU is measured, not durability.
        settings = Settings(data_dir=Path(directory), sqlite_synchronous="NORMAL", limits=Limits(ip_auth_burst=0))
        users = await create_users(settings, args.members - 1)
        async with AppTransport(await build_app(settings)) as app:
            owner = await register(BASE_URL, "owner", "correct horse", transport=app)
            async with await Client.connect(BASE_URL, owner, transport=app, heartbeat=False) as client:
                await invite_in_chunks(client, users, args.chunk, time.process_time, report_at,
                                       args.profile_at, args.profile_out)


async def target(args: argparse.Namespace, report_at: set[int]) -> None:
    accounts = read_accounts(args.accounts)[:args.members]
    if len(accounts) < args.members:
        raise SystemExit(f"--members {args.members} needs as many accounts; the file has {len(accounts)}")
    owner = accounts[0]
    async with aiohttp.ClientSession() as http:
        async with await Client.connect(args.target, Account(owner.user_id, owner.token, owner.username),
                                        transport=AiohttpTransport(http), heartbeat=False) as client:
            await invite_in_chunks(client, [a.user_id for a in accounts[1:]], args.chunk, tree_cpu(args.server_pid),
                                   report_at, None, None)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--members", type=int, default=20_000, help="the channel's size at the end, owner included")
    ap.add_argument("--chunk", type=int, default=1000, help="users per conv.invite")
    ap.add_argument("--report-at", default="1000,5000,10000,20000",
                    help="channel sizes: the CPU of each chunk that takes the channel past one is printed")
    ap.add_argument("--profile-at", type=int, default=None, help="embedded: cProfile the chunk past this size")
    ap.add_argument("--profile-out", type=Path, default=None, help="embedded: where the profile's stats go")
    ap.add_argument("--target", default="", help="a running server's URL instead of the embedded app")
    ap.add_argument("--accounts", type=Path, default=None, help="with --target: `parley admin loadtest-users`' file")
    ap.add_argument("--server-pid", type=int, default=0, help="with --target: the server's pid (`parley up`'s)")
    args = ap.parse_args(argv)
    report_at = {int(n) for n in args.report_at.split(",") if n}
    if args.target:
        if args.accounts is None or not args.server_pid:
            ap.error("--target needs --accounts and --server-pid")
        asyncio.run(target(args, report_at))
    else:
        asyncio.run(embedded(args, report_at))


if __name__ == "__main__":
    main()
