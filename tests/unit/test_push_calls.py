"""Call pushes from the call events (delivery/push_decider.py): the ring to each callee's phones
(the PushKit token on iOS), its cancel when the callee answers elsewhere or declines, and for
everyone still ringing when the ring ends, who also get a missed-call push like a message's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import pytest

from parley.records import (Account, Call, ConvRow, Device, EventRecord, MemberRow, NotifySettings, SessionFamily,
                            unread_count)
from push.notification import PushRequest
from delivery.push_decider import PushDecider

FAR = 2**62


def device(device_id: str, user: str, platform: str) -> Device:
    return Device(id=device_id, user_id=user, family_id="f-" + user, platform=platform, token="t-" + device_id,
                  app_id="chat.parley", locale="en", created_at=0)


class Store:
    """The reads a call decision makes: devices, logins, accounts, the calls as stored (none
    unless a test stores them), and for a missed call the conversation, blocks, settings and
    unread counts."""

    def __init__(self, devices: list[Device], members: Sequence[str] = ("ada", "bob", "carol", "dan"),
                 kind: str = "group", settings: dict[str, dict[str, NotifySettings]] | None = None) -> None:
        self._devices = devices
        self.conv = ConvRow(id="c1", kind=kind, title="Ops" if kind == "group" else None, visibility="private",
                            password_hash=None, history="all", owner="ada", created_at=0, last_seq=7)
        self.members = [MemberRow(conv="c1", user=u, role="member", visible_from=1, read_seq=5, joined_at=0)
                        for u in members]
        self.settings = settings or {}
        self.calls: dict[str, Call] = {}

    async def call(self, call_id: str) -> Call | None:
        return self.calls.get(call_id)

    async def conv_members(self, conv: str) -> tuple[ConvRow, list[MemberRow]] | None:
        return (self.conv, self.members) if conv == self.conv.id else None

    async def block_peers(self, user: str) -> set[str]:
        return set()

    async def notify_settings_of(self, user_ids: Sequence[str]) -> list[dict[str, NotifySettings]]:
        return [self.settings.get(u, {}) for u in user_ids]

    async def unread_counts(self, users: Sequence[str]) -> list[int]:
        return [sum(unread_count(self.conv.last_seq, m.read_seq, m.visible_from) for m in self.members if m.user == u)
                for u in users]

    async def devices_of(self, user_ids: Sequence[str]) -> list[list[Device]]:
        return [[d for d in self._devices if d.user_id == u] for u in user_ids]

    async def session_families_of(self, user_ids: Sequence[str]) -> list[list[SessionFamily]]:
        return [[SessionFamily(id="f-" + u, user_id=u, created_at=0, last_used_at=0, expires_at=FAR, label="phone",
                               token_gen=0)] for u in user_ids]

    async def accounts(self, user_ids: Sequence[str]) -> list[Account]:
        return [Account(id=u, username=u, created_at=0, display_name="Ada") for u in user_ids]


class Presence:
    """Who has a live session: `online`."""

    def __init__(self, online: Sequence[str] = ()) -> None:
        self.online = list(online)

    async def locate(self, users: Sequence[str]) -> dict[str, list[str]]:
        return {"gw": [u for u in users if u in self.online]}


class Out:
    def __init__(self) -> None:
        self.requests: list[PushRequest] = []

    async def publish_many(self, items: Sequence[PushRequest]) -> None:
        self.requests += items


def event(type_: str, **fields: Any) -> EventRecord:
    return EventRecord("c1", msgspec.json.encode({"op": "event", "type": type_, "call": "k1", "conv": "c1", **fields}))


async def test_a_ring_goes_to_the_callees_phones_and_stops_when_answered_or_over() -> None:
    store = Store([device("ios", "bob", "apns"), device("voip", "bob", "apns_voip"), device("droid", "carol", "fcm"),
                   device("dan-ios", "dan", "apns"), device("ada", "ada", "fcm")])
    out = Out()
    decider = PushDecider(store, Presence(), out, window_s=20)  # type: ignore[arg-type]
    await decider.decide([event("call.ringing", media="video", initiator="ada", ringing=["bob", "carol", "dan"],
                                ring_deadline=0)])
    rings = [(r.device_id, r.platform, r.kind, r.call_id, r.call_media, r.title) for r in out.requests]
    # bob's PushKit token, not his ordinary one; dan has no PushKit token: his ordinary one
    assert rings == [("voip", "apns_voip", "call", "k1", "video", "Ada"), ("droid", "fcm", "call", "k1", "video", "Ada"),
                     ("dan-ios", "apns", "call", "k1", "video", "Ada")]
    out.requests.clear()
    await decider.decide([event("call.accepted", user="bob", device="laptop")])
    assert [(r.device_id, r.kind) for r in out.requests] == [("voip", "call_cancel")]
    out.requests.clear()
    await decider.decide([event("call.declined", user="carol", device="droid"), event("call.ended", reason="hangup",
                                                                                      duration=5)])
    # dan's ring ended unanswered: a cancel, then a missed-call push like a message's
    assert [(r.device_id, r.kind) for r in out.requests] == [("droid", "call_cancel"), ("dan-ios", "call_cancel"),
                                                             ("dan-ios", "message")]
    out.requests.clear()
    await decider.decide([event("call.ended", reason="hangup", duration=5)])  # nobody rings any more
    assert out.requests == []


async def test_rings_of_two_calls_are_two_pushes() -> None:
    first = PushRequest(user="u", device_id="d", platform="fcm", token="t", app_id="a", conv="c", seq=0, kind="call",
                        call_id="k1")
    second = PushRequest(user="u", device_id="d", platform="fcm", token="t", app_id="a", conv="c", seq=0, kind="call",
                         call_id="k2")
    assert first.dedup_key() != second.dedup_key()


def missed(requests: Sequence[PushRequest]) -> list[tuple[str, str | None, str | None, int, str | None, bool]]:
    """(device, title, body, seq, call, previews) of the missed-call pushes among `requests`."""
    return [(r.device_id, r.title, r.body, r.seq, r.call_id, r.previews) for r in requests if r.kind == "message"]


async def ring_then(decider: PushDecider, *then: EventRecord, ringing: Sequence[str] = ("bob", "carol")) -> None:
    await decider.decide([event("call.ringing", media="audio", initiator="ada", ringing=list(ringing),
                                ring_deadline=0), *then])


@pytest.mark.parametrize("ending", [
    [event("call.ended", reason="missed", duration=0)],  # the ring timed out, or the caller hung up first
    [event("call.ringing", media="audio", initiator="ada", ringing=[], ring_deadline=0)],  # timed out, call goes on
])
async def test_a_callee_whose_ring_ends_unanswered_gets_a_missed_call_push(ending: list[EventRecord]) -> None:
    store = Store([device("bob-ios", "bob", "apns"), device("bob-voip", "bob", "apns_voip"),
                   device("carol-droid", "carol", "fcm")])
    out = Out()
    decider = PushDecider(store, Presence(), out, window_s=20)  # type: ignore[arg-type]
    await ring_then(decider, *ending)
    # Not to the PushKit token (calls only); collapsing per conversation, as messages do.
    assert missed(out.requests) == [("bob-ios", "Ops", "Missed call from Ada", 7, "k1", True),
                                    ("carol-droid", "Ops", "Missed call from Ada", 7, "k1", True)]
    assert {(r.collapse_id, r.badge) for r in out.requests if r.kind == "message"} == {(None, 2)}
    out.requests.clear()
    await decider.decide(ending)  # the ring is over: nothing more
    assert out.requests == []


async def test_who_answered_declined_or_was_taken_out_missed_nothing() -> None:
    store = Store([device(d, d, "fcm") for d in ("bob", "carol", "dan")])
    out = Out()
    decider = PushDecider(store, Presence(), out, window_s=20)  # type: ignore[arg-type]
    await ring_then(decider, event("call.accepted", user="bob", device="phone"),
                    event("call.declined", user="carol", device="phone"),
                    event("call.left", user="dan", removed=True), event("call.ended", reason="hangup", duration=9),
                    ringing=("bob", "carol", "dan"))
    assert [(r.device_id, r.kind) for r in out.requests if r.kind != "call"] == [
        ("bob", "call_cancel"), ("carol", "call_cancel"), ("dan", "call_cancel")]


async def test_a_missed_call_obeys_the_callees_settings_and_whether_they_are_looking() -> None:
    far = 2**62
    store = Store([device(d, d, "fcm") for d in ("bob", "carol", "dan", "eve")],
                  members=("ada", "bob", "carol", "dan", "eve"),
                  settings={"bob": {"": NotifySettings(level="none")},
                            "carol": {"c1": NotifySettings(mute_until=far)},
                            "dan": {"": NotifySettings(level="mentions", previews=False)}})
    out = Out()
    decider = PushDecider(store, Presence(online=["eve"]), out, window_s=20)  # type: ignore[arg-type]
    await decider.decide([event("read", user="eve", seq=7)])  # eve is reading the conversation
    await ring_then(decider, event("call.ended", reason="missed", duration=0), ringing=("bob", "carol", "dan", "eve"))
    # bob wants nothing, carol muted the conversation, eve is looking at it; dan, mentions only,
    # hears of a call meant for him, without a preview
    assert missed(out.requests) == [("dan", "Ops", "Missed call from Ada", 7, "k1", False)]
