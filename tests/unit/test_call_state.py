"""The call state machine (calls/state.py): every transition, its idempotence, and a property
test that random sequences of transitions and webhooks never break the invariants."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calls import state as S
from calls.state import Outcome
from parley.errors import Conflict, Forbidden
from parley.events import CallAccepted, CallDeclined, CallEnded, CallJoined, CallLeft, CallRinging
from parley.frames import CallState, EndReason, Media, ParticipantJoined, ParticipantLeft, RoomFinished, RoomListed
from parley.records import Call, RoomSession

T0 = 1_700_000_000_000
RING_MS = 45_000


def started(callees: Iterable[str] = ("bob",), *, direct: bool = True, busy: Iterable[str] = (),
            max_participants: int = 8, media: Media = Media.AUDIO) -> Outcome:
    return S.start(call_id="k1", conv="c1", media=media, initiator="ann", device="ann-phone", callees=callees,
                   direct=direct, max_participants=max_participants, ring_timeout_ms=RING_MS, now=T0, busy=busy)


def joined(call: Call, user: str, device: str, sid: str, now: int = T0 + 2000) -> Outcome:
    return S.reconcile(call, ParticipantJoined(call=call.id, user=user, device=device, sid=sid), now)


def left(call: Call, user: str, device: str, sid: str, now: int = T0 + 60_000, replaced: bool = False) -> Outcome:
    return S.reconcile(call, ParticipantLeft(call=call.id, user=user, device=device, sid=sid, replaced=replaced), now)


def types(outcome: Outcome) -> list[str]:
    return [type(e).__name__ for e in outcome.events]


def answered_direct_call() -> Call:
    """ann called bob, bob answered on his phone, both phones are in the room."""
    call = S.join(started().call, "bob", "bob-phone", T0 + 5000).call
    call = joined(call, "ann", "ann-phone", "PA1", T0 + 1000).call
    return joined(call, "bob", "bob-phone", "PB1", T0 + 6000).call


# ---- start --------------------------------------------------------------------------------


def test_a_call_starts_ringing_every_callee_but_the_caller() -> None:
    out = started(["bob", "cid", "ann"], direct=False)
    assert out.call.state is CallState.RINGING
    assert out.call.ringing == {"bob", "cid"} and out.call.invited == {"bob", "cid"}
    assert out.call.ring_deadline == T0 + RING_MS and out.call.answered_at is None
    assert out.events == (CallRinging(call="k1", conv="c1", media=Media.AUDIO, initiator="ann", ringing=("bob", "cid"),
                                      ring_deadline=T0 + RING_MS),)
    assert out.record is None and not out.close_room and out.noop is None


def test_a_callee_in_another_call_is_busy_and_a_call_where_all_are_busy_ends_busy() -> None:
    out = started(["bob"], busy=["bob"])
    assert types(out) == ["CallRinging", "CallDeclined", "CallEnded"]
    assert out.events[1] == CallDeclined(call="k1", conv="c1", user="bob", busy=True)
    assert out.call.state is CallState.ENDED and out.call.end_reason is EndReason.BUSY
    assert out.events[-1] == CallEnded(call="k1", conv="c1", reason=EndReason.BUSY, duration=0)
    assert out.record is not None and out.record.reason is EndReason.BUSY and not out.record.missed
    assert out.close_room


def test_a_busy_callee_of_a_group_call_does_not_ring_and_the_others_do() -> None:
    out = started(["bob", "cid"], direct=False, busy=["cid", "zed"])  # zed is not a callee: ignored
    assert out.call.ringing == {"bob"} and out.call.busy == {"cid"} and out.call.state is CallState.RINGING
    assert types(out) == ["CallRinging", "CallDeclined"]


def test_a_call_nobody_is_rung_for_is_active_at_once() -> None:
    out = started([], direct=False)  # a channel's live room: listeners join, nobody rings
    assert out.call.state is CallState.ACTIVE and out.call.answered_at == T0
    assert out.events == (CallRinging(call="k1", conv="c1", media=Media.AUDIO, initiator="ann", ringing=(),
                                      ring_deadline=T0 + RING_MS),)


def test_a_second_start_in_the_conversation_returns_the_live_call() -> None:
    live = started().call
    again = S.start(call_id="k2", conv="c1", media=Media.VIDEO, initiator="ann", device="ann-tablet", callees=["bob"],
                    direct=True, max_participants=2, ring_timeout_ms=RING_MS, now=T0 + 1, live=live)
    assert again.call is live and again.events == () and again.noop == "a call is live in this conversation"


def test_a_start_by_a_callee_of_the_live_call_answers_it() -> None:
    live = started().call  # ann calls bob while bob calls ann
    out = S.start(call_id="k2", conv="c1", media=Media.AUDIO, initiator="bob", device="bob-phone", callees=["ann"],
                  direct=True, max_participants=2, ring_timeout_ms=RING_MS, now=T0 + 1, live=live)
    assert out.call.id == "k1" and out.call.state is CallState.ACTIVE
    assert out.events == (CallAccepted(call="k1", conv="c1", user="bob", device="bob-phone"),)


def test_a_start_after_the_live_call_ended_makes_a_new_call() -> None:
    ended = S.end(started().call, T0 + 10).call
    out = S.start(call_id="k2", conv="c1", media=Media.AUDIO, initiator="ann", device="ann-phone", callees=["bob"],
                  direct=True, max_participants=2, ring_timeout_ms=RING_MS, now=T0 + 20, live=ended)
    assert out.call.id == "k2" and out.call.state is CallState.RINGING


def test_a_call_needs_room_for_two() -> None:
    with pytest.raises(ValueError):
        started(max_participants=1)


# ---- answering ----------------------------------------------------------------------------


def test_answering_on_one_device_settles_the_user_and_activates_the_call() -> None:
    out = S.join(started().call, "bob", "bob-phone", T0 + 5000)
    assert out.events == (CallAccepted(call="k1", conv="c1", user="bob", device="bob-phone"),)
    assert out.call.state is CallState.ACTIVE and out.call.answered_at == T0 + 5000
    assert out.call.ringing == frozenset() and out.call.accepted == {"bob"}
    # bob's tablet answers too, a moment later: nothing changes (it gets a token all the same)
    again = S.join(out.call, "bob", "bob-tablet", T0 + 5100)
    assert again.call is out.call and again.events == () and again.noop == "already in the call"
    # and declining on the tablet after the phone answered changes nothing either
    late = S.decline(out.call, "bob", "bob-tablet", T0 + 5200)
    assert late.call is out.call and late.events == ()


def test_the_caller_joining_from_another_device_changes_nothing() -> None:
    call = started().call
    assert S.join(call, "ann", "ann-tablet", T0 + 1).noop == "already in the call"


def test_joining_an_ended_call_is_a_conflict() -> None:
    ended = S.decline(started().call, "bob", "bob-phone", T0 + 1).call
    with pytest.raises(Conflict):
        S.join(ended, "bob", "bob-tablet", T0 + 2)


def test_a_full_call_refuses_one_more_participant() -> None:
    call = started(["bob", "cid", "dan"], direct=False, max_participants=3).call
    call = S.join(call, "bob", "b", T0 + 1).call
    call = S.join(call, "cid", "c", T0 + 2).call
    with pytest.raises(Conflict, match="full"):
        S.join(call, "dan", "d", T0 + 3)
    # someone leaves: there is room again
    call = S.leave(call, "cid", "c", T0 + 4).call
    assert S.join(call, "dan", "d", T0 + 5).call.in_call == {"ann", "bob", "dan"}


def test_in_a_group_call_the_others_keep_ringing_after_the_first_answer() -> None:
    call = S.join(started(["bob", "cid"], direct=False).call, "bob", "b", T0 + 1).call
    assert call.state is CallState.ACTIVE and call.ringing == {"cid"}
    # a member nobody rang (or who declined) may join the call in progress
    call = S.decline(call, "cid", "c", T0 + 2).call
    out = S.join(call, "cid", "c2", T0 + 3)
    assert out.call.accepted == {"bob", "cid"} and out.call.declined == frozenset()


# ---- declining, busy ----------------------------------------------------------------------


def test_declining_a_direct_call_ends_it_declined() -> None:
    out = S.decline(started().call, "bob", "bob-phone", T0 + 3000)
    assert types(out) == ["CallDeclined", "CallEnded"]
    assert out.events[0] == CallDeclined(call="k1", conv="c1", user="bob", device="bob-phone")
    assert out.call.end_reason is EndReason.DECLINED and out.call.duration == 0
    assert out.record is not None and out.record.participants == ("ann",) and out.record.ended_at == T0 + 3000
    assert out.close_room


def test_a_group_call_ends_declined_when_the_last_callee_declines_and_busy_when_all_were_busy() -> None:
    call = started(["bob", "cid"], direct=False).call
    first = S.decline(call, "bob", "b", T0 + 1)
    assert first.call.state is CallState.RINGING and types(first) == ["CallDeclined"]
    last = S.callee_busy(first.call, "cid", T0 + 2)
    assert last.call.end_reason is EndReason.DECLINED  # one declined, one busy: declined
    all_busy = S.callee_busy(S.callee_busy(call, "bob", T0 + 1).call, "cid", T0 + 2)
    assert all_busy.call.end_reason is EndReason.BUSY


def test_declining_twice_or_without_ringing_changes_nothing() -> None:
    call = started(["bob", "cid"], direct=False).call
    once = S.decline(call, "bob", "b", T0 + 1).call
    assert S.decline(once, "bob", "b2", T0 + 2).call is once
    assert S.decline(once, "zed", "z", T0 + 2).noop == "the call does not ring for this user"
    assert S.decline(once, "ann", "a", T0 + 2).call is once  # the caller cannot decline its own call
    assert S.callee_busy(once, "bob", T0 + 2).call is once


# ---- leaving, ending ----------------------------------------------------------------------


def test_either_side_hanging_up_ends_a_direct_call_with_its_duration() -> None:
    call = answered_direct_call()
    out = S.leave(call, "bob", "bob-phone", T0 + 65_000)
    assert types(out) == ["CallLeft", "CallEnded"]
    assert out.events[-1] == CallEnded(call="k1", conv="c1", reason=EndReason.HANGUP, duration=60_000)
    assert out.record == S.CallRecord(call="k1", media=Media.AUDIO, initiator="ann", participants=("ann", "bob"),
                                      reason=EndReason.HANGUP, started_at=T0, ended_at=T0 + 65_000, duration=60_000,
                                      missed=False)
    assert out.close_room and out.call.present == frozenset()


def test_the_caller_giving_up_before_an_answer_is_a_missed_call() -> None:
    out = S.leave(started().call, "ann", "ann-phone", T0 + 9000)
    assert out.call.end_reason is EndReason.MISSED
    assert out.record is not None and out.record.missed and out.record.duration == 0


def test_a_group_call_goes_on_until_its_last_participant_leaves() -> None:
    call = S.join(started(["bob", "cid"], direct=False).call, "bob", "b", T0 + 1000).call
    call = joined(call, "bob", "b", "PB", T0 + 1500).call
    out = S.leave(call, "ann", "ann-phone", T0 + 2000)
    assert types(out) == ["CallLeft"] and out.call.state is CallState.ACTIVE
    out = S.leave(out.call, "bob", "b", T0 + 3000)
    assert types(out) == ["CallLeft", "CallEnded"] and out.call.end_reason is EndReason.HANGUP
    assert out.call.duration == 2000


def test_leaving_removes_the_users_other_devices_from_the_room() -> None:
    call = S.join(started(["bob", "cid"], direct=False).call, "bob", "b", T0 + 1).call
    call = joined(call, "bob", "phone", "P1").call
    call = joined(call, "bob", "laptop", "L1").call
    out = S.leave(call, "bob", "phone", T0 + 5000)
    assert out.remove == (RoomSession("bob", "laptop", "L1"), RoomSession("bob", "phone", "P1"))
    assert out.events == (CallLeft(call="k1", conv="c1", user="bob", device="phone"),)
    # their webhooks arrive afterwards: nothing more happens
    assert left(out.call, "bob", "laptop", "L1").noop == "this session has already left"


def test_leaving_twice_or_without_being_in_the_call_changes_nothing() -> None:
    call = S.join(started(["bob", "cid"], direct=False).call, "bob", "b", T0 + 1).call
    once = S.leave(call, "bob", "b", T0 + 2).call
    assert S.leave(once, "bob", "b", T0 + 3).call is once
    assert S.leave(once, "cid", "c", T0 + 3).noop == "not in the call"


def test_ending_a_call_ends_it_once() -> None:
    call = answered_direct_call()
    out = S.end(call, T0 + 20_000)
    assert out.call.end_reason is EndReason.HANGUP and out.record is not None
    again = S.end(out.call, T0 + 30_000)
    assert again.call is out.call and again.events == () and again.record is None and not again.close_room
    assert S.end(started().call, T0 + 1).call.end_reason is EndReason.MISSED
    assert S.end(call, T0 + 1, failed=True).call.end_reason is EndReason.FAILED


def test_a_call_never_ends_before_it_began_even_on_a_clock_behind() -> None:
    out = S.end(answered_direct_call(), T0 - 10_000)
    assert out.call.ended_at == T0 + 5000 and out.call.duration == 0


# ---- ring timeout -------------------------------------------------------------------------


def test_an_unanswered_call_is_missed_after_the_ring_timeout_and_not_before() -> None:
    call = started().call
    early = S.ring_timeout(call, T0 + RING_MS - 1)
    assert early.call is call and early.noop == "the ring timeout has not passed"
    out = S.ring_timeout(call, T0 + RING_MS)
    assert types(out) == ["CallEnded"] and out.call.end_reason is EndReason.MISSED
    assert out.record is not None and out.record.missed
    assert S.ring_timeout(out.call, T0 + RING_MS + 1).call is out.call


def test_the_ring_timeout_of_an_answered_group_call_stops_the_others_ringing() -> None:
    call = S.join(started(["bob", "cid"], direct=False).call, "bob", "b", T0 + 1).call
    out = S.ring_timeout(call, T0 + RING_MS + 5)
    assert out.call.state is CallState.ACTIVE and out.call.ringing == frozenset()
    assert out.events == (CallRinging(call="k1", conv="c1", media=Media.AUDIO, initiator="ann", ringing=(),
                                      ring_deadline=T0 + RING_MS),)
    assert S.ring_timeout(out.call, T0 + RING_MS + 6).noop == "nobody is ringing"
    assert S.ring_timeout(answered_direct_call(), T0 + RING_MS).noop == "nobody is ringing"


# ---- moderation ---------------------------------------------------------------------------


def test_a_removed_member_leaves_is_taken_out_of_the_room_and_may_not_come_back() -> None:
    call = S.join(started(["bob", "cid"], direct=False).call, "bob", "b", T0 + 1).call
    call = S.join(call, "cid", "c", T0 + 2).call
    call = joined(call, "cid", "c", "PC").call
    out = S.remove(call, "cid", T0 + 3)
    assert out.events == (CallLeft(call="k1", conv="c1", user="cid", removed=True),)
    assert out.remove == (RoomSession("cid", "c", "PC"),) and out.call.state is CallState.ACTIVE
    with pytest.raises(Forbidden):
        S.join(out.call, "cid", "c", T0 + 4)
    # its token is still valid for a while: a reconnection is removed again, and changes nothing
    back = joined(out.call, "cid", "c", "PC2")
    assert back.call is out.call and back.remove == (RoomSession("cid", "c", "PC2"),)
    assert S.remove(out.call, "cid", T0 + 5).noop == "already removed"


def test_removing_a_ringing_callee_stops_its_ringing_and_can_end_the_call() -> None:
    out = S.remove(started().call, "bob", T0 + 1)
    assert types(out) == ["CallLeft", "CallEnded"] and out.call.end_reason is EndReason.MISSED


def test_removing_a_member_who_had_left_keeps_it_out_silently() -> None:
    call = S.join(started(["bob", "cid"], direct=False).call, "bob", "b", T0 + 1).call
    call = S.leave(call, "bob", "b", T0 + 2).call
    out = S.remove(call, "bob", T0 + 3)
    assert out.events == () and out.call.removed == {"bob"}
    assert S.remove(call, "zed", T0 + 3).noop == "not in the call"


# ---- webhooks -----------------------------------------------------------------------------


def test_a_users_first_device_in_the_room_is_announced_once() -> None:
    call = S.join(started().call, "bob", "phone", T0 + 1).call
    first = joined(call, "bob", "phone", "P1")
    assert first.events == (CallJoined(call="k1", conv="c1", user="bob", device="phone"),)
    second = joined(first.call, "bob", "laptop", "L1")
    assert second.events == () and second.noop is None and len(second.call.present) == 2
    assert joined(second.call, "bob", "laptop", "L1").noop == "already in the room"


def test_a_device_leaving_while_another_stays_is_not_the_user_leaving() -> None:
    call = S.join(started(["bob", "cid"], direct=False).call, "bob", "phone", T0 + 1).call
    call = joined(joined(call, "bob", "phone", "P1").call, "bob", "laptop", "L1").call
    out = left(call, "bob", "phone", "P1")
    assert out.events == () and "bob" in out.call.in_call
    out = left(out.call, "bob", "laptop", "L1")
    assert out.events == (CallLeft(call="k1", conv="c1", user="bob", device="laptop"),)


def test_the_last_participant_leaving_the_room_ends_the_call() -> None:
    call = answered_direct_call()
    out = left(call, "ann", "ann-phone", "PA1", T0 + 30_000)
    assert types(out) == ["CallLeft", "CallEnded"] and out.call.end_reason is EndReason.HANGUP
    assert out.call.duration == 25_000
    assert left(out.call, "bob", "bob-phone", "PB1").noop == "the call has ended"


def test_a_reconnection_under_the_same_identity_is_not_a_leave() -> None:
    call = answered_direct_call()
    # LiveKit lets the new connection in and drops the old one as a duplicate identity,
    # and may report the two in either order
    for first, second in ((("left", "PB1"), ("joined", "PB2")), (("joined", "PB2"), ("left", "PB1"))):
        out = call
        for kind, sid in (first, second):
            step = (left(out, "bob", "bob-phone", sid, replaced=True) if kind == "left"
                    else joined(out, "bob", "bob-phone", sid))
            assert step.events == () and step.call.state is CallState.ACTIVE
            out = step.call
        assert out.present == {RoomSession("ann", "ann-phone", "PA1"), RoomSession("bob", "bob-phone", "PB2")}


def test_a_leave_delivered_before_its_join_wins() -> None:
    call = S.join(started(["bob", "cid"], direct=False).call, "bob", "b", T0 + 1).call
    early = left(call, "bob", "b", "P1")
    assert early.events == () and early.noop is None and "P1" in early.call.gone
    late = joined(early.call, "bob", "b", "P1")
    assert late.call is early.call and late.noop == "this session has already left"


def test_a_member_back_with_a_valid_token_rejoins_a_group_call() -> None:
    call = S.join(started(["bob", "cid"], direct=False).call, "bob", "b", T0 + 1).call
    call = S.leave(call, "bob", "b", T0 + 2).call
    out = joined(call, "bob", "b", "P9", T0 + 3)
    assert types(out) == ["CallAccepted", "CallJoined"] and "bob" in out.call.in_call


def test_a_join_to_an_ended_call_closes_the_room_it_recreated() -> None:
    ended = S.end(answered_direct_call(), T0 + 10_000).call
    out = joined(ended, "bob", "bob-phone", "PB7")
    assert out.call is ended and out.close_room and out.events == ()


def test_the_room_finishing_ends_the_call_as_failed_only_when_its_server_shut_down() -> None:
    call = answered_direct_call()
    done = S.reconcile(call, RoomFinished(call="k1"), T0 + 8000)
    assert done.call.end_reason is EndReason.HANGUP and done.record is not None
    assert S.reconcile(done.call, RoomFinished(call="k1"), T0 + 9000).call is done.call
    assert S.reconcile(call, RoomFinished(call="k1", failed=True), T0 + 8000).call.end_reason is EndReason.FAILED
    assert S.reconcile(started().call, RoomFinished(call="k1"), T0 + 8000).call.end_reason is EndReason.MISSED


def listed(call: Call, *sids: str, exists: bool = True, now: int = T0 + 120_000) -> Outcome:
    return S.reconcile(call, RoomListed(call=call.id, exists=exists, sids=sids), now)


def test_a_sweep_that_finds_everyone_in_the_room_changes_nothing() -> None:
    call = answered_direct_call()
    out = listed(call, "PB1", "PA1", "PX9")  # PX9: someone the call does not know (a late join webhook)
    assert out.call is call and out.noop is not None and out.events == () and not out.close_room


def test_a_session_missing_from_two_sweeps_in_a_row_has_left() -> None:
    call = S.join(S.join(started(["bob", "cid"], direct=False).call, "bob", "bob-phone", T0 + 1000).call,
                  "cid", "cid-phone", T0 + 1000).call
    for user, sid in (("ann", "PA1"), ("bob", "PB1"), ("cid", "PC1")):
        call = joined(call, user, f"{user}-phone", sid).call
    first = listed(call, "PA1", "PC1")  # bob's participant_left never came
    assert first.events == () and first.record is None and first.call.unseen == {"PB1"}
    assert first.call.present == call.present  # once is not enough: bob may have joined after the listing
    second = listed(first.call, "PA1", "PC1", now=T0 + 180_000)
    assert second.events == (CallLeft(call="k1", conv="c1", user="bob", device="bob-phone"),)
    assert second.call.in_call == {"ann", "cid"} and second.call.state is CallState.ACTIVE
    assert "PB1" in second.call.gone and second.call.unseen == frozenset()
    # A late webhook for the session changes nothing more.
    assert left(second.call, "bob", "bob-phone", "PB1").noop is not None


def test_a_session_found_again_by_the_next_sweep_stays() -> None:
    call = answered_direct_call()
    missed = listed(call, "PA1").call
    assert missed.unseen == {"PB1"}
    back = listed(missed, "PA1", "PB1")
    assert back.events == () and back.call.unseen == frozenset() and back.call.present == call.present


def test_the_last_sessions_missing_twice_end_the_call_with_its_record() -> None:
    call = listed(answered_direct_call()).call
    out = listed(call, now=T0 + 180_000)
    assert types(out) == ["CallLeft", "CallEnded"] and out.call.end_reason is EndReason.HANGUP
    assert out.record is not None and out.close_room and out.call.ended_at == T0 + 180_000


def test_a_sweep_that_finds_no_room_ends_the_call_and_not_a_ringing_one() -> None:
    out = listed(answered_direct_call(), exists=False)
    assert types(out) == ["CallEnded"] and out.call.end_reason is EndReason.HANGUP and out.record is not None
    ringing = started().call
    assert listed(ringing, exists=False).call is ringing
    assert listed(out.call, exists=False).call is out.call


def test_a_stored_call_decodes_to_the_same_call() -> None:
    call = answered_direct_call()
    assert msgspec.json.decode(msgspec.json.encode(call), type=Call) == call
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(call), type=Call) == call


def test_events_encode_as_typed_frames() -> None:
    raw = msgspec.json.encode(CallEnded(call="k1", conv="c1", reason=EndReason.MISSED, duration=0))
    assert msgspec.json.decode(raw) == {"type": "call.ended", "call": "k1", "conv": "c1", "reason": "missed",
                                        "duration": 0}
    assert msgspec.json.decode(raw, type=S.AnyCallEvent) == CallEnded(call="k1", conv="c1", reason=EndReason.MISSED,
                                                                       duration=0)


# ---- the property -------------------------------------------------------------------------

USERS = ("ann", "bob", "cid", "dan")
DEVICES = ("phone", "laptop")
#: A connection's sid is unique (LiveKit makes a new one per connection): here, per device and try.
CONNECTIONS = st.integers(0, 2)

users = st.sampled_from(USERS)
devices = st.sampled_from(DEVICES)
steps = st.one_of(
    st.tuples(st.just("join"), users, devices),
    st.tuples(st.just("decline"), users, devices),
    st.tuples(st.just("busy"), users),
    st.tuples(st.just("leave"), users, devices),
    st.tuples(st.just("remove"), users),
    st.tuples(st.just("end"), st.booleans()),
    st.tuples(st.just("ring_timeout")),
    st.tuples(st.just("start_again"), users, devices),
    st.tuples(st.just("joined"), users, devices, CONNECTIONS),
    st.tuples(st.just("left"), users, devices, CONNECTIONS, st.booleans()),
    st.tuples(st.just("finished"), st.booleans()),
    st.tuples(st.just("listed"), st.booleans(), st.sets(st.tuples(users, devices, CONNECTIONS), max_size=4)),
)


def apply(call: Call, step: tuple[object, ...], now: int) -> Outcome:
    kind, *args = step
    u = str(args[0]) if args else ""
    d = str(args[1]) if len(args) > 1 else ""
    if kind == "join":
        return S.join(call, u, d, now)
    if kind == "decline":
        return S.decline(call, u, d, now)
    if kind == "busy":
        return S.callee_busy(call, u, now)
    if kind == "leave":
        return S.leave(call, u, d, now)
    if kind == "remove":
        return S.remove(call, u, now)
    if kind == "end":
        return S.end(call, now, failed=bool(args[0]))
    if kind == "ring_timeout":
        return S.ring_timeout(call, now)
    if kind == "start_again":
        return S.start(call_id="k2", conv=call.conv, media=call.media, initiator=u, device=d, callees=USERS,
                       direct=call.direct, max_participants=call.max_participants, ring_timeout_ms=RING_MS, now=now,
                       live=call)
    if kind == "joined":
        return S.reconcile(call, ParticipantJoined(call=call.id, user=u, device=d, sid=f"{u}/{d}/{args[2]}"), now)
    if kind == "left":
        return S.reconcile(call, ParticipantLeft(call=call.id, user=u, device=d, sid=f"{u}/{d}/{args[2]}",
                                                 replaced=bool(args[3])), now)
    if kind == "listed":
        found: list[tuple[str, str, int]] = sorted(args[1])  # type: ignore[call-overload]
        return S.reconcile(call, RoomListed(call=call.id, exists=bool(args[0]),
                                            sids=tuple(f"{u}/{d}/{c}" for u, d, c in found)), now)
    assert kind == "finished"
    return S.reconcile(call, RoomFinished(call=call.id, failed=bool(args[0])), now)


def check_invariants(call: Call) -> None:
    ended = call.state is CallState.ENDED
    assert ended == (call.ended_at is not None) == (call.end_reason is not None)
    assert call.initiator not in call.invited and call.ringing <= call.invited
    for a, b in ((call.ringing, call.accepted), (call.ringing, call.declined), (call.ringing, call.busy),
                 (call.accepted, call.declined), (call.accepted, call.busy), (call.declined, call.busy)):
        assert not a & b
    assert not call.removed & call.in_call
    assert call.left <= call.accepted | {call.initiator}
    if call.state is CallState.RINGING:
        assert call.ringing and call.answered_at is None and not call.accepted
    if call.state is CallState.ACTIVE:
        assert call.answered_at is not None and call.answered_at >= call.started_at
    if ended:
        assert not call.ringing and not call.present and not call.in_room
        assert call.ended_at is not None and call.ended_at >= call.started_at and call.duration >= 0
        if call.end_reason in (EndReason.MISSED, EndReason.DECLINED, EndReason.BUSY):
            assert call.answered_at is None
        if call.end_reason is EndReason.HANGUP:
            assert call.answered_at is not None
    else:
        assert {s.user for s in call.present} <= call.in_room <= call.in_call
    assert not {s.sid for s in call.present} & call.gone
    devices_present = [(s.user, s.device) for s in call.present]
    assert len(devices_present) == len(set(devices_present))


@settings(max_examples=400, deadline=None, database=None)
@given(callees=st.sets(st.sampled_from(USERS[1:]), max_size=3), busy=st.sets(st.sampled_from(USERS[1:]), max_size=2),
       direct=st.booleans(), max_participants=st.integers(2, 4),
       script=st.lists(st.tuples(steps, st.integers(-5_000, 60_000)), max_size=40))
def test_no_sequence_of_transitions_breaks_the_invariants(callees: set[str], busy: set[str], direct: bool,
                                                          max_participants: int,
                                                          script: list[tuple[tuple[object, ...], int]]) -> None:
    if direct:
        callees, busy = {"bob"}, busy & {"bob"}
    out = S.start(call_id="k1", conv="c1", media=Media.VIDEO, initiator="ann", device="phone", callees=callees,
                  direct=direct, max_participants=max_participants, ring_timeout_ms=RING_MS, now=T0, busy=busy)
    ends = [e for e in out.events if isinstance(e, CallEnded)]
    records = [out.record] if out.record else []
    call, now = out.call, T0
    check_invariants(call)
    for step, dt in script:
        now += dt  # clocks may step back a little: writers on other hosts
        before = call
        try:
            out = apply(call, step, now)
        except (Conflict, Forbidden):
            continue  # refused: the call is as it was
        assert out.call.id == "k1" or step[0] == "start_again"
        if out.call.id != "k1":
            continue
        call = out.call
        check_invariants(call)
        assert all(e.call == "k1" for e in out.events)
        ends += [e for e in out.events if isinstance(e, CallEnded)]
        records += [out.record] if out.record else []
        if out.noop is not None:
            assert call is before and out.events == () and out.record is None
        if before.state is CallState.ENDED:
            assert call is before  # an ended call stays ended, exactly as it ended
        if step[0] == "listed":
            continue  # a sweep's listing is a new look each time: a second miss is what takes a session out
        # the same step again, at once: nothing more to announce
        try:
            again = apply(call, step, now)
        except (Conflict, Forbidden):
            continue
        if again.call.id == "k1":
            assert again.events == () and again.record is None and again.call == call
    assert len(ends) == len(records) == (1 if call.state is CallState.ENDED else 0)
    if records:
        assert records[0].reason is call.end_reason and records[0].duration == ends[0].duration == call.duration >= 0
        assert records[0].missed == (call.end_reason is EndReason.MISSED)
