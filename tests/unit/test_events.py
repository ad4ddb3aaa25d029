"""The outbound half of the protocol (parley/events.py): the bytes each event and result puts on
the wire, decoding any event with `AnyEvent`, and docs/protocol.md naming the same events."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, get_args

import msgspec
import pytest

from parley import events as E
from parley.frames import ConvView, EndReason, Media, Message, encode
from parley.profiles import Profile
from parley.records import NotifySettings

MSG = Message(conv="c1", seq=3, sender="a", ts=10, cmid="m3", text="hi")
PROFILE = Profile(id="b", username="bob", display_name="Bob", avatar=None, status_text="away")
VIEW = ConvView(id="c1", kind="group", title=None, visibility="private", has_password=False, history="joined",
                owner="a", created_at=1, last_seq=3, read_seq=3, unread=0, role="owner")

#: One sample of every event, and the fields it sends after `op` and `type`, in wire order.
SAMPLES: list[tuple[E.Event, dict[str, Any]]] = [
    (E.MessageNew(message=MSG), {"message": MSG}),
    (E.MessageNew(message=MSG, files=[E.FileInfo(id="a1", name="cat.png", size=9, mime="image/png", width=640,
                                                 height=480, thumbs=[96, 480]),
                                      E.FileInfo(id="a2", name="x.pdf", size=5, mime="application/pdf")]),
     {"message": MSG, "files": [{"id": "a1", "name": "cat.png", "size": 9, "mime": "image/png", "width": 640,
                                 "height": 480, "thumbs": [96, 480]},
                                {"id": "a2", "name": "x.pdf", "size": 5, "mime": "application/pdf"}]}),
    (E.MessageEdited(message=MSG), {"message": MSG}),
    (E.MessageDeleted(message=MSG), {"message": MSG}),
    (E.Reaction(conv="c1", seq=3, emoji="+1", user="b", on=True),
     {"conv": "c1", "seq": 3, "emoji": "+1", "user": "b", "on": True}),
    (E.ReadReceipt(conv="c1", user="b", seq=3), {"conv": "c1", "user": "b", "seq": 3}),
    (E.DeliveredReceipt(conv="c1", user="b", seq=3), {"conv": "c1", "user": "b", "seq": 3}),
    (E.UserTyping(conv="c1", user="b"), {"conv": "c1", "user": "b"}),
    (E.MemberJoined(conv="c1", user="b", role="member"), {"conv": "c1", "user": "b", "role": "member"}),
    (E.MemberJoined(conv="c1", user="b", role="member", by="a"),
     {"conv": "c1", "user": "b", "role": "member", "by": "a"}),
    (E.MemberLeft(conv="c1", user="b"), {"conv": "c1", "user": "b"}),
    (E.MemberLeft(conv="c1", user="b", by="a"), {"conv": "c1", "user": "b", "by": "a"}),
    (E.MemberLeft(conv="c1", user="b", by="a", reason="spam"),
     {"conv": "c1", "user": "b", "by": "a", "reason": "spam"}),
    (E.MemberUpdated(conv="c1", user="b", role="owner"), {"conv": "c1", "user": "b", "role": "owner"}),
    (E.MemberUpdated(conv="c1", user="b", role="admin", by="a"),
     {"conv": "c1", "user": "b", "role": "admin", "by": "a"}),
    (E.MemberMuted(conv="c1", user="b", until=None, by="system", reason=None),
     {"conv": "c1", "user": "b", "until": None, "by": "system", "reason": None}),
    (E.MemberMuted(conv="c1", user="b", until=99, by="a", reason="r"),
     {"conv": "c1", "user": "b", "until": 99, "by": "a", "reason": "r"}),
    (E.MemberUnmuted(conv="c1", user="b", by="a"), {"conv": "c1", "user": "b", "by": "a"}),
    (E.MemberBanned(conv="c1", user="b", by="a", until=None, reason=None),
     {"conv": "c1", "user": "b", "by": "a", "until": None, "reason": None}),
    (E.MemberUnbanned(conv="c1", user="b", by="a"), {"conv": "c1", "user": "b", "by": "a"}),
    (E.ConvUpdated(conv=VIEW), {"conv": VIEW}),
    (E.PinChanged(conv="c1", seq=3, on=False, by="a"), {"conv": "c1", "seq": 3, "on": False, "by": "a"}),
    (E.UserBlocked(user="b"), {"user": "b"}),
    (E.UserUnblocked(user="b"), {"user": "b"}),
    (E.PresenceChanged(user="b", status="online"), {"user": "b", "status": "online"}),
    (E.PresenceChanged(user="b", status="offline", last_seen=7), {"user": "b", "status": "offline", "last_seen": 7}),
    (E.UserUpdated(user=PROFILE), {"user": PROFILE}),
    (E.Resync(), {}),
    (E.Resync(conv="c1"), {"conv": "c1"}),
    (E.InviteNew(conv="c1", kind="group", title=None, by="a", at=5),
     {"conv": "c1", "kind": "group", "title": None, "by": "a", "at": 5}),
    (E.InviteRemoved(conv="c1", accepted=False), {"conv": "c1", "accepted": False}),
    (E.CallRinging(call="c1-k1", conv="c1", media=Media.VIDEO, initiator="a", ringing=("b",), ring_deadline=9),
     {"call": "c1-k1", "conv": "c1", "media": "video", "initiator": "a", "ringing": ["b"], "ring_deadline": 9}),
    (E.CallAccepted(call="c1-k1", conv="c1", user="b", device="phone"),
     {"call": "c1-k1", "conv": "c1", "user": "b", "device": "phone"}),
    (E.CallDeclined(call="c1-k1", conv="c1", user="b", device="phone"),
     {"call": "c1-k1", "conv": "c1", "user": "b", "device": "phone"}),
    (E.CallDeclined(call="c1-k1", conv="c1", user="b", busy=True), {"call": "c1-k1", "conv": "c1", "user": "b",
                                                                     "busy": True}),
    (E.CallJoined(call="c1-k1", conv="c1", user="b", device="phone"),
     {"call": "c1-k1", "conv": "c1", "user": "b", "device": "phone"}),
    (E.CallLeft(call="c1-k1", conv="c1", user="b", device="phone"),
     {"call": "c1-k1", "conv": "c1", "user": "b", "device": "phone"}),
    (E.CallLeft(call="c1-k1", conv="c1", user="b", removed=True), {"call": "c1-k1", "conv": "c1", "user": "b",
                                                                    "removed": True}),
    (E.CallEnded(call="c1-k1", conv="c1", reason=EndReason.HANGUP, duration=60_000),
     {"call": "c1-k1", "conv": "c1", "reason": "hangup", "duration": 60_000}),
    (E.NotifySettingsChanged(conv=None, settings=NotifySettings(level="mentions", mute_until=9, previews=False)),
     {"conv": None, "settings": {"level": "mentions", "mute_until": 9, "previews": False}}),
    (E.NotifySettingsChanged(conv="c1", settings=None), {"conv": "c1", "settings": None}),
]


def tag(cls: type[E.Event]) -> str:
    return str(cls.__struct_config__.tag)


@pytest.mark.parametrize(("event", "fields"), SAMPLES, ids=lambda v: tag(type(v)) if isinstance(v, E.Event) else "")
def test_an_event_frame_is_op_event_then_its_type_then_its_fields_absent_ones_left_out(event, fields):
    assert E.encode_event(event) == encode({"op": "event", "type": tag(type(event)), **fields})
    assert msgspec.json.decode(E.encode_event(event), type=E.AnyEvent) == event


def leaves(cls: type[E.Event]) -> set[type[E.Event]]:
    """The event types below `cls` (`MessageEvent` and `MemberEvent` give their subclasses their
    first fields; they are not sent themselves)."""
    below = cls.__subclasses__()
    return set().union(*map(leaves, below)) if below else {cls}


def test_every_event_is_in_any_event_and_has_a_sample():
    defined = leaves(E.Event)
    assert set(get_args(E.AnyEvent)) == defined
    assert {type(event) for event, _ in SAMPLES} == defined


def test_an_ok_result_is_op_ok_then_rid_then_its_fields():
    assert encode(E.Ok(rid="r1")) == b'{"op":"ok","rid":"r1"}'
    assert encode(E.SendResult(rid="r1", conv="c1", seq=3, ts=10)) == b'{"op":"ok","rid":"r1","conv":"c1","seq":3,"ts":10}'
    assert encode(E.SanctionResult(rid="r1", until=None)) == b'{"op":"ok","rid":"r1","until":null}'
    assert encode(E.ConvResult(rid="r1", conv=VIEW)) == encode({"op": "ok", "rid": "r1", "conv": VIEW})
    assert encode(E.ConvResult(rid="r1", conv=VIEW, invited=["b"])) == encode(
        {"op": "ok", "rid": "r1", "conv": VIEW, "invited": ["b"]})
    assert encode(E.InviteResult(rid="r1", added=["a"], invited=[])) == \
        b'{"op":"ok","rid":"r1","added":["a"],"invited":[]}'
    sync = E.SyncResult(rid="r1", convs=[E.ConvSync(conv="c1", last_seq=3, read_seq=1, unread=2, messages=[MSG],
                                                    more=False)])
    assert encode(sync) == encode({"op": "ok", "rid": "r1", "convs": [
        {"conv": "c1", "last_seq": 3, "read_seq": 1, "unread": 2, "messages": [MSG], "more": False}]})
    hello = E.HelloResult(rid="r1", session_id="s", user_id="u", server_time=5, heartbeat_s=30,
                          limits={"max_frame_bytes": 65536}, expires_at=900)
    assert encode(hello) == encode({"op": "ok", "rid": "r1", "session_id": "s", "user_id": "u", "server_time": 5,
                                    "heartbeat_s": 30, "limits": {"max_frame_bytes": 65536}, "expires_at": 900})
    assert encode(E.AuthResult(rid="r2", expires_at=901)) == b'{"op":"ok","rid":"r2","expires_at":901}'


# ---- docs/protocol.md names the same events --------------------------------------------------

PROTOCOL = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def documented_events() -> dict[str, set[str]]:
    """Each event type in the docs' event tables (`| type | fields |`) -> the names its rows quote.
    A name with `*` (`call.*`) reserves a family for a later issue and names no event yet."""
    found: dict[str, set[str]] = {}
    in_table = False
    for line in PROTOCOL.read_text().splitlines():
        if re.fullmatch(r"\|\s*type\s*\|\s*fields\s*\|", line.strip()):
            in_table = True
            continue
        if not line.startswith("|"):
            in_table = False
        if not in_table or line.startswith("|---"):
            continue
        types, fields = line.strip().strip("|").split("|", 1)
        for name in re.findall(r"`([^`]+)`", types):
            if "*" not in name:
                found.setdefault(name, set()).update(re.findall(r"`([^`]+)`", fields))
    return found


def test_docs_protocol_names_every_event_the_server_sends_and_no_other():
    documented = set(documented_events())
    sent = {tag(cls) for cls in get_args(E.AnyEvent)}
    assert sorted(documented - sent) == [], "in docs/protocol.md, not in parley/events.py"
    assert sorted(sent - documented) == [], "in parley/events.py, not in docs/protocol.md"


def test_docs_protocol_names_every_field_of_every_event():
    documented = documented_events()
    missing = {tag(cls): sorted(set(cls.__struct_fields__) - documented.get(tag(cls), set()))
               for cls in get_args(E.AnyEvent)}
    assert {t: f for t, f in missing.items() if f} == {}
