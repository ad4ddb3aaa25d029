"""Delivery fans out a whole batch at once: one presence lookup, events in log order per
gateway, membership changes applied from the event that makes them, failures contained."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

import delivery.fanout
from delivery.fanout import Fanout, MemberCache
from delivery.plan import route
from delivery.worker import DeliveryWorker
from parley.errors import Unavailable
from parley.ports import Deliver, GatewayMessage
from parley.records import EventRecord


class Members:
    """The store's member lists (only what MemberCache reads)."""

    def __init__(self, lists: dict[str, list[str]]) -> None:
        self.lists = lists
        self.reads = 0

    async def member_ids(self, conv: str) -> list[str]:
        self.reads += 1
        if conv == "broken":
            raise RuntimeError("a bug reading members")
        return list(self.lists[conv])


class Presence:
    """user -> gateways; counts lookups; can be away or broken."""

    def __init__(self, where: dict[str, list[str]]) -> None:
        self.where = where
        self.calls: list[list[str]] = []
        self.away = 0

    async def locate(self, users: Sequence[str]) -> dict[str, list[str]]:
        self.calls.append(list(users))
        if self.away:
            self.away -= 1
            raise Unavailable("redis away", retry_after_ms=1)
        if "poison" in users:
            raise RuntimeError("a bug in presence")
        found: dict[str, list[str]] = {}
        for user in users:
            for gateway in self.where.get(user, ()):
                found.setdefault(gateway, []).append(user)
        return found


class Bus:
    """What each gateway was sent, in order; the n-th publish may find the bus away."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, GatewayMessage]] = []
        self.away_at: set[int] = set()
        self.attempts = 0

    async def to_gateway(self, gateway_id: str, msg: GatewayMessage) -> None:
        self.attempts += 1
        if self.attempts in self.away_at:
            raise Unavailable("nats buffer full", retry_after_ms=1)
        self.sent.append((gateway_id, msg))

    def to(self, gateway: str) -> list[tuple[bytes, list[str]]]:
        return [(m.frame, m.users) for g, m in self.sent if g == gateway and isinstance(m, Deliver)]


def rig(lists: dict[str, list[str]], where: dict[str, list[str]]) -> tuple[DeliveryWorker, Fanout, Members, Presence, Bus]:
    members, presence, bus = Members(lists), Presence(where), Bus()
    fanout = Fanout(MemberCache(members), presence, bus)  # type: ignore[arg-type]
    return DeliveryWorker(None, fanout), fanout, members, presence, bus  # type: ignore[arg-type]


def ev(conv: str, text: str, **kw: object) -> EventRecord:
    return EventRecord(conv, text.encode(), **kw)  # type: ignore[arg-type]


WHERE = {"a": ["gw1"], "b": ["gw2"], "c": ["gw1", "gw2"]}


async def test_a_batch_costs_one_presence_lookup_and_keeps_log_order_per_gateway():
    worker, _, _, presence, bus = rig({"g": ["a", "b"], "h": ["b", "c"]}, WHERE)
    await worker.deliver([ev("g", "g1"), ev("h", "h1"), ev("g", "g2"), ev("h", "h2", to=["c"]), ev("g", "g3")])
    assert len(presence.calls) == 1
    assert sorted(presence.calls[0]) == ["a", "b", "c"]  # the union, each user once
    assert bus.to("gw1") == [(b"g1", ["a"]), (b"h1", ["c"]), (b"g2", ["a"]), (b"h2", ["c"]), (b"g3", ["a"])]
    assert bus.to("gw2") == [(b"g1", ["b"]), (b"h1", ["b", "c"]), (b"g2", ["b"]), (b"h2", ["c"]), (b"g3", ["b"])]


async def test_a_member_change_mid_batch_applies_to_the_events_after_it_not_before():
    worker, fanout, members, _, bus = rig({"g": ["a"]}, WHERE)
    await fanout.members.get("g")  # delivery holds the list from before the change
    members.lists["g"] = ["a", "b"]  # stored with the batch's member.joined
    await worker.deliver([ev("g", "before"), ev("g", "joined", members_changed=True), ev("g", "after")])
    assert bus.to("gw1") == [(b"before", ["a"]), (b"joined", ["a"]), (b"after", ["a"])]
    assert bus.to("gw2") == [(b"joined", ["b"]), (b"after", ["b"])]


async def test_a_batch_of_joins_reads_the_member_list_once_and_all_of_them_hear_each_join():
    worker, fanout, members, _, bus = rig({"g": ["a"]}, WHERE)
    await fanout.members.get("g")
    members.lists["g"] = ["a", "b", "c"]  # a mass invite: every join stored before any is relayed
    await worker.deliver([ev("g", "before"), ev("g", "joined b", members_changed=True),
                          ev("g", "joined c", members_changed=True), ev("g", "after")])
    assert members.reads == 2  # before the batch, and once after its first change
    assert bus.to("gw1") == [(b"before", ["a"]), (b"joined b", ["a", "c"]), (b"joined c", ["a", "c"]),
                             (b"after", ["a", "c"])]
    assert bus.to("gw2") == [(b"joined b", ["b", "c"]), (b"joined c", ["b", "c"]), (b"after", ["b", "c"])]


async def test_a_change_in_the_next_batch_reads_the_member_list_again():
    worker, _, members, _, bus = rig({"g": ["a"]}, WHERE)
    await worker.deliver([ev("g", "joined a", members_changed=True)])
    members.lists["g"] = ["a", "b"]
    await worker.deliver([ev("g", "joined b", members_changed=True)])
    assert members.reads == 2
    assert bus.to("gw2") == [(b"joined b", ["b"])]


async def test_the_events_of_a_batch_sharing_a_member_list_route_it_once(monkeypatch: pytest.MonkeyPatch):
    routed: list[Sequence[str]] = []

    def counting_route(users: Sequence[str], where: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
        routed.append(users)
        return route(users, where)

    monkeypatch.setattr(delivery.fanout, "route", counting_route)
    worker, _, _, presence, bus = rig({"g": ["a", "b"], "h": ["c"]}, WHERE)
    await worker.deliver([ev("g", "joined", members_changed=True), ev("h", "h1"), ev("g", "g1"),
                          ev("g", "to b", to=["b"]), ev("g", "g2")])
    assert [list(users) for users in routed] == [["a", "b"], ["c"], ["b"]]  # g's list, h's, and the `to` list
    assert presence.calls == [["a", "b", "c"]]
    assert bus.to("gw1") == [(b"joined", ["a"]), (b"h1", ["c"]), (b"g1", ["a"]), (b"g2", ["a"])]
    assert bus.to("gw2") == [(b"joined", ["b"]), (b"h1", ["c"]), (b"g1", ["b"]), (b"to b", ["b"]), (b"g2", ["b"])]


async def test_the_leaver_hears_its_own_leave_and_nothing_after():
    worker, fanout, members, _, bus = rig({"g": ["a", "b"]}, WHERE)
    await fanout.members.get("g")
    members.lists["g"] = ["a"]
    await worker.deliver([ev("g", "m1"), ev("g", "left", also=["b"], members_changed=True), ev("g", "m2")])
    assert bus.to("gw2") == [(b"m1", ["b"]), (b"left", ["b"])]


async def test_a_bus_outage_is_waited_out_and_nothing_is_dropped_or_sent_twice():
    worker, _, _, _, bus = rig({"g": ["a", "b"]}, WHERE)
    bus.away_at = {2, 3}  # the second message finds the bus away twice
    await worker.deliver([ev("g", "m1"), ev("g", "m2")])
    assert bus.to("gw1") == [(b"m1", ["a"]), (b"m2", ["a"])]
    assert bus.to("gw2") == [(b"m1", ["b"]), (b"m2", ["b"])]


async def test_a_presence_outage_is_waited_out_and_the_batch_planned_again():
    worker, _, _, presence, bus = rig({"g": ["a"]}, WHERE)
    presence.away = 2
    await worker.deliver([ev("g", "m1"), ev("g", "m2")])
    assert len(presence.calls) == 3
    assert bus.to("gw1") == [(b"m1", ["a"]), (b"m2", ["a"])]


async def test_an_event_whose_members_cannot_be_read_is_logged_and_the_others_go_on(caplog: pytest.LogCaptureFixture):
    worker, _, _, presence, bus = rig({"g": ["a"]}, WHERE)
    await worker.deliver([ev("g", "m1"), ev("broken", "x"), ev("g", "m2")])
    assert bus.to("gw1") == [(b"m1", ["a"]), (b"m2", ["a"])]
    assert len(presence.calls) == 1
    assert "event of broken not delivered" in caplog.text


async def test_a_lookup_that_fails_for_the_batch_costs_only_the_event_it_fails_on():
    worker, _, _, _, bus = rig({"g": ["a"], "p": ["poison"]}, WHERE)
    await worker.deliver([ev("g", "m1"), ev("p", "x"), ev("g", "m2")])
    assert bus.to("gw1") == [(b"m1", ["a"]), (b"m2", ["a"])]


async def test_an_ephemeral_signal_skips_the_sender_and_the_skip_set():
    _, fanout, _, presence, bus = rig({"g": ["a", "b", "c"]}, WHERE)
    await fanout.send(ev("g", "typing"), skip_user="a", skip=frozenset({"b"}))
    assert presence.calls == [["c"]]
    assert bus.to("gw1") == [(b"typing", ["c"])] and bus.to("gw2") == [(b"typing", ["c"])]
