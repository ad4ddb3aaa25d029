"""Interest-based fan-out: which events go once on a conversation's subject, and a gateway's
bookkeeping of the subjects it follows (joins, leaves, membership changes)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence


from delivery.fanout import Fanout, MemberCache, ToConv, ToGateway
from delivery.plan import on_conv_subject
from gateway.hub import Hub
from gateway.interest import READS_AT_ONCE, ConvFollower, Interest
from gateway.session import Session
from parley.adapters.inprocess import LocalBus
from parley.limits import Limits
from parley.ports import Broadcast, Deliver
from parley.records import ConvRow, EventRecord, MemberRow
from tests.recording_transport import RecordingTransport

MIN = 3


def ev(conv: str, text: str = "m", **kw: object) -> EventRecord:
    return EventRecord(conv, text.encode(), **kw)  # type: ignore[arg-type]


# ---- the decision ---------------------------------------------------------------------------

def test_only_an_event_for_exactly_the_members_of_a_large_conversation_takes_its_subject():
    assert on_conv_subject(ev("c"), 3, MIN)
    assert not on_conv_subject(ev("c"), 2, MIN)  # small
    assert not on_conv_subject(ev("c"), 5000, 0)  # off
    assert not on_conv_subject(ev("c", to=["a"]), 3, MIN)  # chosen users
    assert not on_conv_subject(ev("c", also=["gone"]), 4, MIN)  # someone besides the members
    assert not on_conv_subject(ev("c", members_changed=True), 4, MIN)  # gateways must see who changed


class Store:
    def __init__(self, lists: dict[str, list[str]], kinds: dict[str, str] | None = None) -> None:
        self.lists = lists
        self.kinds = kinds or {}

    async def member_ids(self, conv: str) -> list[str]:
        return list(self.lists[conv])

    async def conv_list(self, user: str) -> list[tuple[ConvRow, MemberRow, str | None]]:
        return [(ConvRow(id=c, kind=self.kinds.get(c, "channel"), title=None, visibility="public",
                         password_hash=None, history="joined", owner="o", created_at=0),
                 MemberRow(conv=c, user=user, role="member", visible_from=1, read_seq=0, joined_at=0), None)
                for c, members in self.lists.items() if user in members]


class Presence:
    def __init__(self, where: dict[str, list[str]]) -> None:
        self.where = where
        self.calls: list[list[str]] = []

    async def locate(self, users: Sequence[str]) -> dict[str, list[str]]:
        self.calls.append(list(users))
        found: dict[str, list[str]] = {}
        for user in users:
            for gateway in self.where.get(user, ()):
                found.setdefault(gateway, []).append(user)
        return found


async def test_a_batch_plans_large_conversations_once_and_looks_up_only_the_rest():
    store = Store({"big": ["a", "b", "c"], "small": ["a", "b"]})
    presence = Presence({"a": ["gw1"], "b": ["gw2"], "c": ["gw2"]})
    fanout = Fanout(MemberCache(store), presence, LocalBus(), min_members=MIN)  # type: ignore[arg-type]
    records = [ev("big", "m1"), ev("small", "s1"), ev("big", "read", to=["c"]),
               ev("big", "joined", members_changed=True), ev("big", "m2")]
    refreshed: set[str] = set()
    planned = await fanout.plan([(r, await fanout.resolve(r, refreshed)) for r in records])
    assert planned == [
        ToConv("big", Broadcast("big", b"m1")),
        ToGateway("gw1", Deliver(["a"], b"s1")), ToGateway("gw2", Deliver(["b"], b"s1")),
        ToGateway("gw2", Deliver(["c"], b"read")),
        ToGateway("gw1", Deliver(["a"], b"joined", "big")), ToGateway("gw2", Deliver(["b", "c"], b"joined", "big")),
        ToConv("big", Broadcast("big", b"m2")),
    ]
    assert len(presence.calls) == 1 and sorted(presence.calls[0]) == ["a", "b", "c"]


async def test_typing_in_a_large_conversation_goes_per_gateway_and_honours_its_skip_set():
    bus = LocalBus()
    got: list[object] = []
    bus.attach("gw1", got.append)
    fanout = Fanout(MemberCache(Store({"big": ["a", "b", "c"]})), Presence({"a": ["gw1"], "b": ["gw1"], "c": ["gw1"]}),  # type: ignore[arg-type]
                    bus, min_members=MIN)
    await fanout.send(ev("big", "typing"), skip_user="a", skip=frozenset({"b"}))
    assert got == [Deliver(["c"], b"typing")]


# ---- the gateway's bookkeeping --------------------------------------------------------------

def test_interest_follows_a_conversation_from_its_first_local_member_to_its_last():
    interest = Interest()
    assert interest.add("a", ["c1", "c2"]) == ["c1", "c2"]
    assert interest.add("b", ["c1"]) == []
    assert interest.drop("a") == ["c2"]
    assert set(interest.members_here("c1")) == {"b"}
    change = interest.update("c1", {"b", "d"})  # d became a member while connected
    assert (change.follow, change.unfollow, change.arrived) == (False, False, {"d"})
    change = interest.update("c1", {"d"})  # b was removed
    assert (change.follow, change.unfollow, change.arrived) == (False, False, set())
    assert interest.drop("b") == []  # b follows nothing any more
    change = interest.update("c1", set())  # d removed, or the conversation is small now
    assert (change.follow, change.unfollow) == (False, True)
    change = interest.update("c3", {"b"})  # grew past the threshold
    assert (change.follow, change.arrived) == (True, {"b"})


def connect(hub: Hub, user: str) -> tuple[Session, RecordingTransport]:
    transport = RecordingTransport()
    session = Session(f"s-{user}-{len(hub.sessions)}", user, None, None, transport, 100)  # type: ignore[arg-type]
    hub.add(session)
    return session, transport


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.002)
    raise AssertionError("condition not reached in time")


async def test_a_gateway_joins_for_members_leaves_after_the_last_and_follows_membership_changes():
    store = Store({"big": ["a", "b", "c"], "dm": ["a", "x"], "small": ["a", "b"]}, {"dm": "direct"})
    bus = LocalBus()
    hub = Hub("gw", Limits())
    inbox = bus.attach("gw", hub.on_message)
    members = MemberCache(store)  # type: ignore[arg-type]
    follower = hub.follower = ConvFollower(inbox, members, store, hub, MIN)  # type: ignore[arg-type]
    task = asyncio.create_task(follower.run())
    try:
        _, ta = connect(hub, "a")
        await follower.connected("a")
        _, tz = connect(hub, "z")  # not a member
        await follower.connected("z")
        assert inbox.refs == {"big": 1}  # not the direct chat, not the small group

        await bus.publish_conv("big", Broadcast("big", b'{"m":1}'))
        await asyncio.sleep(0)  # frames leave at the end of the loop's pass
        assert ta.frames() == [{"m": 1}] and tz.frames() == []

        # z is added: delivery drops its list, then names the change to the gateways of the
        # members; a broadcast right behind it waits until z counts as a member.
        store.lists["big"].append("z")
        await members.invalidate("big")
        await bus.to_gateway("gw", Deliver(["a", "z"], b'{"joined":"z"}', "big"))
        await bus.publish_conv("big", Broadcast("big", b'{"m":2}'))
        await until(lambda: len(tz.frames()) == 3)
        assert tz.frames() == [{"joined": "z"}, {"op": "event", "type": "resync", "conv": "big"}, {"m": 2}]

        # a is removed: a broadcast right behind the change does not reach a.
        store.lists["big"].remove("a")
        await members.invalidate("big")
        await bus.to_gateway("gw", Deliver(["a", "z"], b'{"left":"a"}', "big"))
        await bus.publish_conv("big", Broadcast("big", b'{"m":3}'))
        await until(lambda: tz.frames()[-1] == {"m": 3})
        assert ta.frames() == [{"m": 1}, {"joined": "z"}, {"m": 2}, {"left": "a"}]
        assert inbox.refs == {"big": 1}

        # z's last session leaves: the subject is left.
        session_z = next(s for s in hub.sessions.values() if s.user == "z")
        assert hub.remove(session_z)
        await follower.disconnected("z")
        assert inbox.refs == {}
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_burst_of_membership_changes_is_applied_with_one_read():
    store = Store({"big": ["a", "b", "c"]})
    reads: list[str] = []

    class Counting(MemberCache):
        async def get(self, conv: str) -> Sequence[str]:
            reads.append(conv)
            return await super().get(conv)

    hub = Hub("gw", Limits())
    inbox = LocalBus().attach("gw", hub.on_message)
    follower = hub.follower = ConvFollower(inbox, Counting(store), store, hub, MIN)  # type: ignore[arg-type]
    _, ta = connect(hub, "a")
    task = asyncio.create_task(follower.run())
    try:
        for _ in range(5):  # a mass invite: one change per invited user
            follower.changed("big")
        follower.broadcast("big", b'{"m":1}')
        await until(lambda: ta.frames() != [])
        assert reads == ["big"]
        assert ta.frames() == [{"op": "event", "type": "resync", "conv": "big"}, {"m": 1}]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class GatedLists:
    """Member lists read from the store when asked, answered once `open` is set."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.open = asyncio.Event()
        self.reads: list[str] = []

    async def get(self, conv: str) -> Sequence[str]:
        self.reads.append(conv)
        members = list(self.store.lists[conv])
        await self.open.wait()
        return members

    async def size(self, conv: str) -> int:
        return len(await self.get(conv))


async def test_users_connecting_at_once_read_their_conversations_concurrently():
    store = Store({"big1": ["a", "x", "y"], "big2": ["b", "x", "y"]})
    lists = GatedLists(store)
    hub = Hub("gw", Limits())
    inbox = LocalBus().attach("gw", hub.on_message)
    follower = ConvFollower(inbox, lists, store, hub, MIN)  # type: ignore[arg-type]
    connects = [asyncio.create_task(follower.connected(u)) for u in ("a", "b")]
    await until(lambda: sorted(lists.reads) == ["big1", "big2"])  # both reading, neither done
    lists.open.set()
    await asyncio.gather(*connects)
    assert inbox.refs == {"big1": 1, "big2": 1}


async def test_a_membership_change_during_a_connect_s_reads_is_not_undone_by_them():
    store = Store({"big": ["a", "x", "y"]})
    lists = GatedLists(store)
    hub = Hub("gw", Limits())
    inbox = LocalBus().attach("gw", hub.on_message)
    follower = ConvFollower(inbox, lists, store, hub, MIN)  # type: ignore[arg-type]
    connect(hub, "a")
    connecting = asyncio.create_task(follower.connected("a"))
    await until(lambda: lists.reads == ["big"])
    store.lists["big"].remove("a")  # a is removed while that read is on its way
    follower.changed("big")
    lists.open.set()  # the read answers "a is a member"
    await connecting
    assert follower.interest.members_here("big") == () and inbox.refs == {}


async def test_reads_for_connecting_users_are_bounded():
    store = Store({f"c{n}": ["a", "x", "y"] for n in range(READS_AT_ONCE + 10)})
    lists = GatedLists(store)
    hub = Hub("gw", Limits())
    inbox = LocalBus().attach("gw", hub.on_message)
    follower = ConvFollower(inbox, lists, store, hub, MIN)  # type: ignore[arg-type]
    connecting = asyncio.create_task(follower.connected("a"))
    await until(lambda: len(lists.reads) == READS_AT_ONCE)
    await asyncio.sleep(0.01)
    assert len(lists.reads) == READS_AT_ONCE  # the rest wait for a free read
    lists.open.set()
    await connecting
    assert len(inbox.refs) == READS_AT_ONCE + 10


class SharedLists:
    """The shared lists (Redis on `parley up`) as a gateway sees them: it holds none itself."""

    def __init__(self, lists: dict[str, list[str]]) -> None:
        self.lists = lists
        self.fetched: list[str] = []

    async def get(self, conv: str) -> list[str] | None:
        self.fetched.append(conv)
        return self.lists.get(conv)

    async def size(self, conv: str) -> int | None:
        return len(self.lists[conv]) if conv in self.lists else None

    async def put(self, conv: str, members: Sequence[str]) -> None:
        self.lists[conv] = list(members)

    async def invalidate(self, conv: str) -> None:
        self.lists.pop(conv, None)


async def test_a_login_asks_the_size_of_a_large_conversation_not_its_member_list():
    members = [f"u{i}" for i in range(10_000)]
    store = Store({"channel": members})
    shared = SharedLists({"channel": members})
    hub = Hub("gw", Limits())
    inbox = LocalBus().attach("gw", hub.on_message)
    follower = ConvFollower(inbox, MemberCache(store, shared=shared, hold=False), store, hub, MIN)  # type: ignore[arg-type]
    for user in members[:50]:  # fifty members of a 10,000-member channel log in
        connect(hub, user)
        await follower.connected(user)
    assert inbox.refs == {"channel": 1} and shared.fetched == []  # followed, and no list was fetched


async def test_a_size_not_shared_yet_is_read_with_the_list_once_and_shared():
    store = Store({"c": ["a", "b", "c", "d"]})
    shared = SharedLists({})
    cache = MemberCache(store, shared=shared, hold=False)  # type: ignore[arg-type]
    assert await cache.size("c") == 4 and shared.fetched == ["c"]
    assert await cache.size("c") == 4 and shared.fetched == ["c"]  # the shared size answers now
    held = MemberCache(store)  # type: ignore[arg-type]
    await held.get("c")
    store.lists["c"].append("e")
    assert await held.size("c") == 4  # the list held (delivery's, current by its events) answers
