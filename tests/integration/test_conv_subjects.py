"""Large conversations over a real nats-server: delivery publishes each event once on the
conversation's subject, two gateways follow it for their members' sessions and follow
membership changes, also across a nats-server restart."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import msgspec
import pytest

from delivery.fanout import Fanout, MemberCache
from delivery.worker import DeliveryWorker
from gateway.hub import Hub
from gateway.interest import ConvFollower
from gateway.session import Session
from parley.adapters.nats_bus import NatsBus
from parley.limits import Limits
from parley.records import ConvRow, EventRecord, MemberRow
from tests.integration.test_nats_bus import until
from tests.recording_transport import RecordingTransport
from tests.nats_redis_servers import ServerProcess, nats_server  # noqa: F401

pytestmark = pytest.mark.integration
MIN_MEMBERS = 3
_ids = itertools.count()


class Store:
    """The store's member lists and conversation lists (what delivery and gateways read)."""

    def __init__(self) -> None:
        self.lists: dict[str, list[str]] = {}

    async def member_ids(self, conv: str) -> list[str]:
        return list(self.lists[conv])

    async def conv_list(self, user: str) -> list[tuple[ConvRow, MemberRow, str | None]]:
        return [(ConvRow(id=c, kind="channel", title=None, visibility="public", password_hash=None,
                         history="joined", owner="o", created_at=0),
                 MemberRow(conv=c, user=user, role="member", visible_from=1, read_seq=0, joined_at=0), None)
                for c, members in self.lists.items() if user in members]


class Transport(RecordingTransport):
    def messages(self) -> list[object]:
        return [f["n"] for f in self.frames() if "n" in f]


class Presence:
    """Where users are, from the hubs themselves; counts lookups."""

    def __init__(self, hubs: Sequence[Hub]) -> None:
        self.hubs = hubs
        self.looked_up: list[str] = []

    async def locate(self, users: Sequence[str]) -> dict[str, list[str]]:
        self.looked_up.extend(users)
        found: dict[str, list[str]] = {}
        for hub in self.hubs:
            here = [u for u in users if u in hub.users()]
            if here:
                found[hub.gateway_id] = here
        return found


@dataclass
class Rig:
    store: Store
    hubs: list[Hub]
    worker: DeliveryWorker
    fanout: Fanout
    presence: Presence

    async def connect(self, gateway: int, user: str) -> Transport:
        hub, transport = self.hubs[gateway], Transport()
        session = Session(f"s{next(_ids)}", user, None, None, transport, 1000)  # type: ignore[arg-type]
        if hub.add(session):
            assert hub.follower is not None
            await hub.follower.connected(user)
        return transport

    async def disconnect(self, gateway: int, user: str) -> None:
        hub = self.hubs[gateway]
        for session in [s for s in hub.sessions.values() if s.user == user]:
            if hub.remove(session):
                assert hub.follower is not None
                await hub.follower.disconnected(user)

    async def send(self, conv: str, *numbers: int) -> None:
        await self.worker.deliver([EventRecord(conv, msgspec.json.encode({"n": n})) for n in numbers])

    async def change(self, conv: str, members: list[str], frame: dict[str, object],
                     also: list[str] | None = None) -> None:
        """A membership change as chat_core stores it, then its event through delivery."""
        self.store.lists[conv] = members
        await self.worker.deliver([EventRecord(conv, msgspec.json.encode(frame), also=also, members_changed=True)])


@pytest.fixture
async def rig(nats_server: ServerProcess) -> AsyncIterator[Rig]:  # noqa: F811
    store = Store()
    buses: list[NatsBus] = []
    hubs: list[Hub] = []
    tasks: list[asyncio.Task[None]] = []
    for n in range(2):
        bus = await NatsBus.connect(nats_server.url, name=f"gw{n}")
        buses.append(bus)
        hub = Hub(f"gw{n}-{time.monotonic_ns()}", Limits())
        inbox = await bus.serve_gateway(hub.gateway_id, hub.on_message)
        # A gateway does not keep lists in memory: it reads what delivery keeps current.
        hub.follower = ConvFollower(inbox, MemberCache(store, hold=False), store, hub, MIN_MEMBERS)  # type: ignore[arg-type]
        tasks.append(asyncio.create_task(hub.follower.run()))
        hubs.append(hub)
    delivery_bus = await NatsBus.connect(nats_server.url, name="delivery")
    buses.append(delivery_bus)
    presence = Presence(hubs)
    fanout = Fanout(MemberCache(store), presence, delivery_bus, min_members=MIN_MEMBERS)  # type: ignore[arg-type]
    yield Rig(store, hubs, DeliveryWorker(None, fanout), fanout, presence)  # type: ignore[arg-type]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for bus in buses:
        await bus.close()


def conv_id() -> str:
    return f"big-{time.monotonic_ns()}-{next(_ids)}"


async def test_members_on_two_gateways_get_each_event_exactly_once_without_a_presence_lookup(rig: Rig):
    conv = conv_id()
    rig.store.lists[conv] = ["a", "b", "c", "d"]
    a, b = await rig.connect(0, "a"), await rig.connect(0, "b")
    c, c2 = await rig.connect(1, "c"), await rig.connect(1, "c")  # two sessions of one user
    outsider = await rig.connect(1, "x")

    await rig.send(conv, *range(1, 21))
    await until(lambda: all(len(t.messages()) == 20 for t in (a, b, c, c2)))
    await asyncio.sleep(0.2)  # nothing more comes
    for got in (a, b, c, c2):
        assert got.messages() == list(range(1, 21))  # once each, in order
    assert outsider.frames() == []
    assert rig.presence.looked_up == []


async def test_a_removed_member_stops_receiving_and_an_added_one_starts(rig: Rig):
    conv = conv_id()
    rig.store.lists[conv] = ["a", "b", "c"]
    a, b, c = await rig.connect(0, "a"), await rig.connect(1, "b"), await rig.connect(1, "c")
    z = await rig.connect(1, "z")
    await rig.send(conv, 1)
    await until(lambda: c.messages() == [1])

    # c is kicked: the leave reaches c (`also`), and nothing published after it does.
    await rig.change(conv, ["a", "b"], {"left": "c"}, also=["c"])
    await rig.send(conv, 2)
    await until(lambda: a.messages() == [1, 2] and b.messages() == [1, 2])
    await asyncio.sleep(0.2)
    assert c.messages() == [1] and {"left": "c"} in c.frames()

    # z joins: its gateway follows the conversation for it and says resync; after that, z hears it.
    await rig.change(conv, ["a", "b", "z"], {"joined": "z"})
    await until(lambda: {"op": "event", "type": "resync", "conv": conv} in z.frames())
    await rig.send(conv, 3)
    await until(lambda: z.messages() == [3] and a.messages() == [1, 2, 3])

    # The last member on gateway 0 leaves: that gateway stops following.
    await rig.disconnect(0, "a")
    await rig.send(conv, 4)
    await until(lambda: b.messages() == [1, 2, 3, 4] and z.messages() == [3, 4])
    assert a.messages() == [1, 2, 3]


async def test_a_conversation_that_shrinks_below_the_threshold_goes_per_gateway_again(rig: Rig):
    conv = conv_id()
    rig.store.lists[conv] = ["a", "b", "c"]
    a, b = await rig.connect(0, "a"), await rig.connect(1, "b")
    await rig.change(conv, ["a", "b"], {"left": "c"}, also=["c"])
    await rig.send(conv, 1)
    await until(lambda: a.messages() == [1] and b.messages() == [1])
    assert "a" in rig.presence.looked_up  # looked up: per gateway now
    await asyncio.sleep(0.2)
    assert a.messages() == [1] and b.messages() == [1]  # and not also through the subject


@pytest.mark.slow
async def test_conversation_subjects_keep_working_after_a_nats_server_restart(
        rig: Rig, nats_server: ServerProcess, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    caplog.set_level(logging.INFO, logger="parley.adapters.nats_bus")
    conv = conv_id()
    rig.store.lists[conv] = ["a", "b", "c"]
    a, b = await rig.connect(0, "a"), await rig.connect(1, "b")

    nats_server.restart()
    await until(lambda: sum("reconnected" in r.getMessage() for r in caplog.records) == 3)
    await rig.send(conv, 1, 2)
    await until(lambda: a.messages() == [1, 2] and b.messages() == [1, 2])
