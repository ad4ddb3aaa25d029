"""chat_core's call operations as pure code (chat_core/ops/calls.py): the policy at start and at
every join, busy callees, ringing and its timeout, the record every call leaves in the history,
moderation taking a member out of a call, and the calls role's reports. Time is injected."""

from __future__ import annotations

from typing import Any

import pytest

from chat_core.core import ChatCore
from chat_core.ops.calls import CallDefaults
from moderation.policy import FOREVER, InstancePolicy
from parley import frames as F
from parley.frames import CallState, Media, ParticipantJoined
from parley.ids import conv_of_call
from parley.records import (
    Call, CallSettings, Command, DropCallMember, EdgeFacts, Facts, InsertMessage, PutCall, PutCallMember, PutCallSettings,
    SanctionRow,
)
from tests.unit.test_core_moderation import NOW, Run, conv, core_with, denied, run

RING_MS = 45_000


def cmd(user: str, body: F.WriteRequest, device: str = "phone", guest: bool = False,
        instance_role: str | None = None) -> Command:
    return Command("c1", user, "gw", "s-" + user, body, instance_role, guest, edge=EdgeFacts(device=device))


def start(user: str = "a", media: Media = Media.AUDIO, **kw: Any) -> Command:
    return cmd(user, F.CallStart(rid="start", conv="c1", media=media), **kw)


def calls_core(*members: tuple[str, str], kind: str = "group", **kw: Any) -> ChatCore:
    return core_with(conv(*members, kind=kind), calls=CallDefaults(ring_timeout_ms=RING_MS, max_participants=8),
                     **kw)


def started(core: ChatCore, user: str = "a", facts: Facts | None = None) -> tuple[Run, str]:
    r = run(core, start(user), facts=facts)
    assert r.reply["op"] == "ok", r.reply
    return r, r.reply["call"]["id"]


def stored(r: Run) -> Call:
    return r.of(PutCall)[-1].call


def room_work(r: Run) -> list[dict[str, Any]]:
    """The RoomWork records of the batch: addressed to nobody, for the calls role."""
    work = [e for e, rec in r.events if e.get("type") == "call.room"]
    assert all(rec.to == [] for e, rec in r.events if e.get("type") == "call.room")
    return work


def test_a_direct_call_rings_the_peer_and_grants_the_caller_a_speakers_place():
    core = calls_core(("a", "member"), ("b", "member"), kind="direct")
    r, call_id = started(core)
    assert conv_of_call(call_id) == "c1"
    assert r.event("call.ringing") == {"op": "event", "type": "call.ringing", "call": call_id, "conv": "c1",
                                       "media": "audio", "initiator": "a", "ringing": ["b"],
                                       "ring_deadline": NOW + RING_MS}
    assert r.reply["grant"] == {"role": "speaker", "max_video_subscriptions": 9}
    view = r.reply["call"]
    assert (view["state"], view["ringing"], view["participants"], view["direct"]) == ("ringing", ["b"], ["a"], True)
    assert r.of(PutCallMember) == [PutCallMember("a", call_id, "c1")]
    assert core.convs["c1"].call is not None and core.convs["c1"].call.id == call_id


def test_the_peer_answers_on_one_device_and_every_device_hears_it():
    core = calls_core(("a", "member"), ("b", "member"), kind="direct")
    _, call_id = started(core)
    r = run(core, cmd("b", F.CallJoin(rid="j", call=call_id), device="tablet"))
    assert r.event("call.accepted") == {"op": "event", "type": "call.accepted", "call": call_id, "conv": "c1",
                                        "user": "b", "device": "tablet"}
    assert r.reply["grant"]["role"] == "speaker" and r.reply["call"]["state"] == "active"
    assert r.of(PutCallMember) == [PutCallMember("b", call_id, "c1")]
    # The phone declines what the tablet answered: nothing changes, nothing is written.
    late = run(core, cmd("b", F.CallDecline(rid="d", call=call_id), device="phone"))
    assert late.reply["call"]["state"] == "active" and late.mutations == []


def test_two_people_calling_each_other_at_once_answer_the_one_call():
    core = calls_core(("a", "member"), ("b", "member"), kind="direct")
    _, call_id = started(core)
    r = run(core, start("b"))
    assert r.reply["call"]["id"] == call_id and r.reply["call"]["state"] == "active"
    assert r.event("call.accepted")["user"] == "b"


def test_a_callee_in_another_call_is_busy_and_the_call_is_recorded_as_busy():
    core = calls_core(("a", "member"), ("b", "member"), kind="direct")
    r, call_id = started(core, facts=Facts(in_calls={"b": {"c9-k1"}}))
    assert r.event("call.declined") == {"op": "event", "type": "call.declined", "call": call_id, "conv": "c1",
                                        "user": "b", "busy": True}
    assert r.event("call.ended")["reason"] == "busy" and r.reply["call"]["state"] == "ended"
    (message,) = [m.message for m in r.of(InsertMessage)]
    assert (message.kind, message.sender, message.seq, message.text) == ("call", "a", 1, "Audio call: busy")
    assert message.call is not None and message.call.reason == "busy" and not message.call.missed
    assert r.event("message.new")["message"]["call"]["participants"] == ["a"]
    assert core.convs["c1"].call is None and not r.of(PutCallMember)  # in and out in one batch: no row


def test_a_declined_call_ends_with_its_record_and_frees_the_caller():
    core = calls_core(("a", "member"), ("b", "member"), kind="direct")
    _, call_id = started(core)
    r = run(core, cmd("b", F.CallDecline(rid="d", call=call_id)))
    assert [e["type"] for e, _ in r.events] == ["call.declined", "call.ended", "message.new", "call.room"]
    assert room_work(r) == [{"type": "call.room", "call": call_id, "remove": [], "close": True}]
    assert r.event("call.ended") == {"op": "event", "type": "call.ended", "call": call_id, "conv": "c1",
                                     "reason": "declined", "duration": 0}
    assert r.of(DropCallMember) == [DropCallMember("a", call_id)]
    assert core.convs["c1"].members["a"].read_seq == 1 and core.convs["c1"].row.last_seq == 1


def test_an_unanswered_call_rings_until_its_deadline_then_is_missed():
    core = calls_core(("a", "member"), ("b", "member"), kind="direct")
    _, call_id = started(core)
    early = run(core, cmd("system", F.CallRingTimeout(rid="t", call=call_id)), now=NOW + RING_MS - 1)
    assert early.reply == {"op": "ok", "rid": "t"} and early.mutations == []
    r = run(core, cmd("system", F.CallRingTimeout(rid="t", call=call_id)), now=NOW + RING_MS)
    assert r.event("call.ended")["reason"] == "missed"
    (message,) = [m.message for m in r.of(InsertMessage)]
    assert message.text == "Missed audio call" and message.call is not None and message.call.missed
    again = run(core, cmd("system", F.CallRingTimeout(rid="t", call=call_id)), now=NOW + RING_MS + 5,
                facts=Facts(calls={call_id: stored(r)}))
    assert again.mutations == []  # a timer fired twice changes nothing


def test_an_answered_call_ends_with_its_duration_when_a_side_hangs_up():
    core = calls_core(("a", "member"), ("b", "member"), kind="direct")
    _, call_id = started(core)
    run(core, cmd("b", F.CallJoin(rid="j", call=call_id)), now=NOW + 2_000)
    r = run(core, cmd("a", F.CallLeave(rid="l", call=call_id)), now=NOW + 67_000)
    assert r.event("call.ended") == {"op": "event", "type": "call.ended", "call": call_id, "conv": "c1",
                                     "reason": "hangup", "duration": 65_000}
    (message,) = [m.message for m in r.of(InsertMessage)]
    assert message.text == "Audio call, 1:05" and message.call is not None
    assert message.call.participants == ("a", "b") and message.call.duration == 65_000
    assert r.of(DropCallMember) == [DropCallMember("a", call_id), DropCallMember("b", call_id)]


def test_joining_an_ended_call_is_a_conflict_and_an_unknown_call_not_found():
    core = calls_core(("a", "member"), ("b", "member"), kind="direct")
    _, call_id = started(core)
    ended = stored(run(core, cmd("a", F.CallEnd(rid="e", call=call_id))))
    assert ended.state is CallState.ENDED
    denied(run(core, cmd("b", F.CallJoin(rid="j", call=call_id)), facts=Facts(calls={call_id: ended})), None,
           "conflict")
    denied(run(core, cmd("b", F.CallJoin(rid="j", call="c1-knope"))), None, "not_found")
    denied(run(core, cmd("x", F.CallJoin(rid="j", call=call_id)), facts=Facts(calls={call_id: ended})), None,
           "not_found")  # not a member: learns nothing


@pytest.mark.parametrize("setup, rule", [
    (lambda state: state.mutes.update(a=SanctionRow(conv="c1", user="a", kind="mute", until=FOREVER, by="o", at=1)),
     "muted"),
    (lambda state: state.blocks.add(("b", "a")), "blocked"),
    (lambda state: state.blocks.add(("a", "b")), "blocking"),
    (lambda state: setattr(state, "call_settings", CallSettings(enabled=False)), "calls_off"),
])
def test_who_may_not_call_is_refused_by_the_policy(setup, rule):
    core = calls_core(("a", "member"), ("b", "member"), kind="direct")
    setup(core.convs["c1"])
    denied(run(core, start()), rule)
    assert core.convs["c1"].call is None


def test_guests_call_only_when_the_instance_lets_them_and_calls_can_be_off_for_the_instance():
    core = calls_core(("a", "member"), ("b", "member"))
    denied(run(core, start(guest=True)), "guest_calls")
    core.instance = InstancePolicy(guest_calls=True)
    assert run(core, start(guest=True)).reply["op"] == "ok"
    core = calls_core(("a", "member"), ("b", "member"), instance=InstancePolicy(calls=False))
    denied(run(core, start()), "calls_off")


def test_every_join_checks_the_policy_again():
    core = calls_core(("a", "owner"), ("b", "member"), ("c", "member"))
    _, call_id = started(core)
    core.convs["c1"].mutes["c"] = SanctionRow(conv="c1", user="c", kind="mute", until=FOREVER, by="a", at=1)
    denied(run(core, cmd("c", F.CallJoin(rid="j", call=call_id))), "muted")


def test_a_channel_call_is_a_live_room_where_subscribers_listen():
    core = calls_core(("o", "owner"), ("s", "member"), ("t", "member"), kind="channel")
    denied(run(core, start("s")), "role")
    r, call_id = started(core, "o")
    assert r.reply["call"]["state"] == "active" and r.event("call.ringing")["ringing"] == []
    joined = run(core, cmd("s", F.CallJoin(rid="j", call=call_id)))
    assert joined.reply["grant"]["role"] == "listener"
    assert run(core, start("t")).reply["grant"]["role"] == "listener"  # calling a live room joins it


def test_a_call_is_full_at_the_conversations_maximum():
    core = calls_core(("a", "owner"), ("b", "member"), ("c", "member"))
    settings = run(core, cmd("a", F.CallSettingsUpdate(rid="s", conv="c1", max_participants=2,
                                                       max_video_subscriptions=4)))
    assert settings.reply == {"op": "ok", "rid": "s", "conv": "c1", "enabled": True, "max_participants": 2,
                              "max_video_subscriptions": 4}
    assert settings.of(PutCallSettings) and [e.action for e in settings.audit] == ["call.settings"]
    r, call_id = started(core)
    assert r.reply["call"]["max_participants"] == 2 and r.reply["grant"]["max_video_subscriptions"] == 4
    run(core, cmd("b", F.CallJoin(rid="j", call=call_id)))
    full = denied(run(core, cmd("c", F.CallJoin(rid="j", call=call_id))), None, "conflict")
    assert "full" in full["message"]
    denied(run(core, cmd("b", F.CallSettingsUpdate(rid="s", conv="c1", enabled=False))), "role")


def test_only_the_initiator_or_an_admin_ends_a_group_call_for_everyone():
    core = calls_core(("o", "owner"), ("a", "member"), ("b", "member"))
    _, call_id = started(core, "a")
    run(core, cmd("b", F.CallJoin(rid="j", call=call_id)))
    denied(run(core, cmd("b", F.CallEnd(rid="e", call=call_id))), "call_end")
    r = run(core, cmd("o", F.CallEnd(rid="e", call=call_id)))
    assert r.event("call.ended")["reason"] == "hangup"


def test_a_member_kicked_mid_call_leaves_it_hears_it_and_cannot_come_back():
    core = calls_core(("o", "owner"), ("b", "member"), ("c", "member"))
    _, call_id = started(core, "o")
    run(core, cmd("b", F.CallJoin(rid="j", call=call_id)), cmd("c", F.CallJoin(rid="j2", call=call_id)))
    r = run(core, cmd("o", F.MemberKick(rid="k", conv="c1", user="b")))
    left = [(e, rec) for e, rec in r.events if e["type"] == "call.left"]
    assert [(e["user"], e["removed"], rec.also) for e, rec in left] == [("b", True, ["b"])]
    assert "b" in stored(r).removed and r.of(DropCallMember) == [DropCallMember("b", call_id)]
    denied(run(core, cmd("b", F.CallJoin(rid="j", call=call_id))), None, "not_found")
    # Its token still works for a while: LiveKit's report of it coming back puts it out again.
    back = run(core, cmd("system", F.CallReconcile(rid="w", event=ParticipantJoined(
        call=call_id, user="b", device="phone", sid="PA_9"))))
    assert back.reply == {"op": "ok", "rid": "w"} and room_work(back) == [
        {"type": "call.room", "call": call_id, "remove": [["b", "phone", "PA_9"]], "close": False}]


def in_the_room(core: ChatCore, call_id: str, *users: str) -> None:
    for n, user in enumerate(users):
        run(core, cmd("system", F.CallReconcile(rid=f"w{n}", event=ParticipantJoined(
            call=call_id, user=user, device="phone", sid=f"PA_{user}"))))


def test_a_member_banned_mid_call_is_taken_out_of_it_and_its_device_out_of_the_room():
    core = calls_core(("o", "owner"), ("b", "member"), ("c", "member"))
    _, call_id = started(core, "o")
    run(core, cmd("b", F.CallJoin(rid="j", call=call_id)), cmd("c", F.CallJoin(rid="j2", call=call_id)))
    in_the_room(core, call_id, "o", "b", "c")
    r = run(core, cmd("o", F.MemberBan(rid="k", conv="c1", user="b")))
    assert [(e["user"], e["removed"], rec.also) for e, rec in r.events if e["type"] == "call.left"] == [
        ("b", True, ["b"])]
    assert room_work(r) == [{"type": "call.room", "call": call_id, "remove": [["b", "phone", "PA_b"]], "close": False}]
    assert r.of(DropCallMember) == [DropCallMember("b", call_id)] and stored(r).in_call == {"o", "c"}


def test_staff_take_a_suspended_user_out_of_a_call_and_nobody_else_may():
    core = calls_core(("o", "owner"), ("b", "member"), ("c", "member"))
    _, call_id = started(core, "o")
    run(core, cmd("b", F.CallJoin(rid="j", call=call_id)), cmd("c", F.CallJoin(rid="j2", call=call_id)))
    in_the_room(core, call_id, "o", "b", "c")
    remove = F.CallRemove(rid="r", call=call_id, user="b")
    denied(run(core, cmd("o", remove)), "call_remove")  # the conversation's owner is not instance staff
    r = run(core, cmd("mod", remove, instance_role="moderator"))
    assert r.reply["call"]["participants"] == ["c", "o"]
    assert [(e["user"], e["removed"], rec.also) for e, rec in r.events if e["type"] == "call.left"] == [
        ("b", True, ["b"])]
    assert room_work(r) == [{"type": "call.room", "call": call_id, "remove": [["b", "phone", "PA_b"]], "close": False}]
    assert r.of(DropCallMember) == [DropCallMember("b", call_id)] and "b" in core.convs["c1"].members
    again = run(core, cmd("mod", remove, instance_role="moderator"))  # a retried suspension: nothing more
    assert again.reply["call"]["participants"] == ["c", "o"] and again.events == [] and again.mutations == []


def test_a_join_to_an_ended_calls_room_closes_it_again():
    core = calls_core(("a", "member"), ("b", "member"), kind="direct")
    _, call_id = started(core)
    ended = stored(run(core, cmd("a", F.CallEnd(rid="e", call=call_id))))
    r = run(core, cmd("system", F.CallReconcile(rid="w", event=ParticipantJoined(
        call=call_id, user="b", device="phone", sid="PA_1"))), facts=Facts(calls={call_id: ended}))
    assert room_work(r) == [{"type": "call.room", "call": call_id, "remove": [], "close": True}]
    assert not r.of(PutCall)  # only the work in the room: the call had ended


def test_a_call_record_is_written_once_even_when_an_earlier_try_stored_it():
    core = calls_core(("a", "member"), ("b", "member"), kind="direct")
    _, call_id = started(core)
    key = ("c1", "a", F.call_record_cmid(call_id))
    r = run(core, cmd("b", F.CallDecline(rid="d", call=call_id)), facts=Facts(idem={key: (1, NOW)}))
    assert r.event("call.ended") and not r.of(InsertMessage)


def test_a_calls_record_cannot_be_edited():
    core = calls_core(("a", "member"), ("b", "member"), kind="direct")
    _, call_id = started(core)
    record = run(core, cmd("b", F.CallDecline(rid="d", call=call_id))).of(InsertMessage)[0].message
    r = run(core, cmd("a", F.Edit(rid="e", conv="c1", seq=record.seq, text="forged")),
            facts=Facts(messages={("c1", record.seq): record}))
    denied(r, None, "bad_request")
