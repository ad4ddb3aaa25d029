"""Presence announcements go on in the background and, however many sessions come or go at
once, only a bounded number read member lists from the shared state at a time."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from delivery.fanout import Fanout
from gateway.contacts import ANNOUNCING_AT_ONCE, Contacts
from gateway.reads import BlockCache
from parley.records import ConvRow, MemberRow
from tests.unit.test_conv_subjects import until


class Store:
    """Every user is in one small group with two friends; nobody blocks anybody."""

    async def conv_list(self, user: str) -> list[tuple[ConvRow, MemberRow, str | None]]:
        return [(ConvRow(id=f"g-{user}", kind="group", title=None, visibility="private", password_hash=None,
                         history="joined", owner=user, created_at=0),
                 MemberRow(conv=f"g-{user}", user=user, role="owner", visible_from=1, read_seq=0, joined_at=0),
                 None)]

    async def block_peers(self, user: str) -> list[str]:
        return []


class GatedMembers:
    """Member lists answered once `open` is set; counts the reads in progress."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.reading = self.most = 0

    async def get(self, conv: str) -> Sequence[str]:
        self.reading += 1
        self.most = max(self.most, self.reading)
        await self.open.wait()
        self.reading -= 1
        return [conv.removeprefix("g-"), "f1", "f2"]


class Presence:
    async def locate(self, users: Sequence[str]) -> dict[str, list[str]]:
        return {"gw": list(users)}


class Bus:
    def __init__(self) -> None:
        self.sent = 0

    async def to_gateway(self, gateway: str, msg: object) -> None:
        self.sent += 1


async def test_a_crowd_coming_online_is_announced_a_bounded_number_at_a_time():
    members, bus, store = GatedMembers(), Bus(), Store()
    contacts = Contacts(store, Fanout(members, Presence(), bus), BlockCache(store))  # type: ignore[arg-type]
    for n in range(200):
        contacts.announce(f"u{n}", online=True)  # returns at once: the sessions go on
    await until(lambda: members.reading == ANNOUNCING_AT_ONCE)
    await asyncio.sleep(0.01)
    assert members.most == ANNOUNCING_AT_ONCE  # the rest wait for a slot
    members.open.set()
    await until(lambda: bus.sent == 200)
    await contacts.stop()
