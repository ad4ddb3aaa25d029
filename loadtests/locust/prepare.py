"""Makes a plan: the conversations a scenario needs, made through the asyncio SDK on the server
under test from a file of load-test accounts (`parley admin loadtest-users`), and the accounts
dealt to the Locust workers.

    python -m loadtests.locust.prepare --url URL --accounts FILE --out PLAN --workers W
        [--chatters N --group-size 50 --chat-rate 200] [--subscribers N --post-rate 1]
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import aiohttp

from loadtests.accounts import create_groups
from loadtests.locust.plan import Account, Conv, Layout, Plan, deal, read_accounts, units_of, write_plan
from parley import limits as L
from parley.sdk import Account as SdkAccount
from parley.sdk import AiohttpTransport, Client


#: How long the owner waits to hear every invite's member.joined.
INVITES_DELIVERED_S = 600.0


async def make_channel(url: str, accounts: list[Account], members: list[int]) -> str:
    """A channel owned by its first member (the poster) with every other member invited; returns
    once the owner has heard every member.joined. Otherwise, on `parley up`, the delivery workers
    were still fanning those events out when the subscribers connected, and each arriving
    subscriber got the rest of them: ~n^2/2 frames (2 million for 2,000) that starved the
    Locust workers."""
    owner, rest = members[0], [accounts[i].user_id for i in members[1:]]
    async with aiohttp.ClientSession() as http:
        async with await Client.connect(url, accounts[owner].token, transport=AiohttpTransport(http),
                                        heartbeat=False) as client:
            reply = await client.request("conv.create", timeout=120.0, kind="channel", title="loadtest channel")
            conv = str(reply["conv"]["id"])
            async with asyncio.timeout(INVITES_DELIVERED_S):
                for start in range(0, len(rest), L.MAX_MEMBERS_PER_REQUEST):
                    chunk = rest[start:start + L.MAX_MEMBERS_PER_REQUEST]
                    await client.request("conv.invite", timeout=120.0, conv=conv, users=chunk)
                    # Heard before the next chunk: 10,000 invites at once overflowed the owner's
                    # own send queue on `parley up` (closed as a slow consumer).
                    for _ in chunk:
                        await client.next_event("member.joined", conv=conv, timeout=INVITES_DELIVERED_S)
    return conv


async def build_plan(url: str, scenario: str, accounts: list[Account], layout: Layout, workers: int) -> Plan:
    if layout.needs() > len(accounts):
        raise SystemExit(f"the scenario needs {layout.needs()} accounts; the file has {len(accounts)}")
    convs: list[Conv] = []
    if layout.groups:
        sdk_accounts = [SdkAccount(a.user_id, a.token, a.username) for a in accounts[:layout.chatters]]
        made, _ = await create_groups(url, sdk_accounts, layout.group_size)
        convs += [Conv(conv, "group", members, members, layout.chat_every_s()) for conv, members in made]
    if layout.channel:
        conv = await make_channel(url, accounts, layout.channel)
        every = 1 / layout.post_rate if layout.post_rate else 0.0
        convs.append(Conv(conv, "channel", layout.channel, layout.channel[:1], every))
    return Plan(scenario, accounts, convs, deal(units_of(len(accounts), convs), workers))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--accounts", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--scenario", default="custom")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--chatters", type=int, default=0)
    ap.add_argument("--group-size", type=int, default=50)
    ap.add_argument("--chat-rate", type=float, default=0.0, help="sends/s of all chatters together")
    ap.add_argument("--subscribers", type=int, default=0)
    ap.add_argument("--post-rate", type=float, default=0.0, help="channel posts/s")
    args = ap.parse_args(argv)
    layout = Layout(chatters=args.chatters, group_size=args.group_size, chat_rate=args.chat_rate,
                    subscribers=args.subscribers, post_rate=args.post_rate)
    plan = asyncio.run(build_plan(args.url, args.scenario, read_accounts(args.accounts), layout, args.workers))
    write_plan(plan, args.out)


if __name__ == "__main__":
    main()
