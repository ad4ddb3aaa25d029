"""Call pushes from the call events (delivery/push_decider.py): the ring to each callee's phones
(the PushKit token on iOS), its cancel when the callee answers elsewhere or declines, and for
everyone still ringing when the ring ends."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from parley.records import Account, Device, EventRecord, SessionFamily
from push.notification import PushRequest
from delivery.push_decider import PushDecider

FAR = 2**62


def device(device_id: str, user: str, platform: str) -> Device:
    return Device(id=device_id, user_id=user, family_id="f-" + user, platform=platform, token="t-" + device_id,
                  app_id="chat.parley", locale="en", created_at=0)


class Store:
    """The reads a call decision makes: devices, logins and accounts."""

    def __init__(self, devices: list[Device]) -> None:
        self._devices = devices

    async def devices(self, user_id: str) -> list[Device]:
        return [d for d in self._devices if d.user_id == user_id]

    async def session_families(self, user_id: str) -> list[SessionFamily]:
        return [SessionFamily(id="f-" + user_id, user_id=user_id, created_at=0, last_used_at=0, expires_at=FAR,
                              label="phone", token_gen=0)]

    async def account(self, user_id: str) -> Account | None:
        return Account(id=user_id, username=user_id, created_at=0)

    async def accounts(self, user_ids: Sequence[str]) -> list[Account]:
        return [Account(id=u, username=u, created_at=0, display_name="Ada") for u in user_ids]


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
    decider = PushDecider(store, None, out, window_s=20)  # type: ignore[arg-type]  # calls ask no presence
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
    assert [(r.device_id, r.kind) for r in out.requests] == [("droid", "call_cancel"), ("dan-ios", "call_cancel")]
    out.requests.clear()
    await decider.decide([event("call.ended", reason="hangup", duration=5)])  # nobody rings any more
    assert out.requests == []


async def test_rings_of_two_calls_are_two_pushes() -> None:
    first = PushRequest(user="u", device_id="d", platform="fcm", token="t", app_id="a", conv="c", seq=0, kind="call",
                        call_id="k1")
    second = PushRequest(user="u", device_id="d", platform="fcm", token="t", app_id="a", conv="c", seq=0, kind="call",
                         call_id="k2")
    assert first.dedup_key() != second.dedup_key()
