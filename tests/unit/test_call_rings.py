"""The rings the push decision keeps by call, rebuilt from the stored call when it did not see a
ring start (delivery/call_rings.py): values in, values out. The calls are made by the real state
machine (calls/state.py), as the conversation's writer stores them."""

from __future__ import annotations

from calls import state
from delivery.call_rings import Ring, RingEnd, recovered, ring_end, still_ringing
from parley.frames import Media
from parley.records import Call

T0, RING_MS = 1_000_000, 45_000


def started(*callees: str) -> Call:
    return state.start(call_id="c1-k1", conv="c1", media=Media.AUDIO, initiator="ada", device="ada-phone",
                       callees=callees, direct=False, max_participants=8, ring_timeout_ms=RING_MS, now=T0).call


def test_a_call_that_rang_nobody_by_push_has_no_ring_to_rebuild() -> None:
    live_room = started()  # a channel's live room: nobody is rung
    assert recovered(live_room) is None and recovered(None) is None


def test_a_rebuilt_ring_counts_every_callee_as_rung_even_those_who_stopped_since() -> None:
    call = state.decline(started("bob", "carol"), "carol", "carol-phone", T0 + 1).call
    # carol's cancel went out before the restart: sent again, the push worker skips it
    assert recovered(call) == Ring("ada", {"bob", "carol"}, recovered=True)


def test_a_start_read_again_rings_only_the_callees_the_store_still_rings() -> None:
    call = state.join(started("bob", "carol"), "bob", "bob-laptop", T0 + 1).call
    assert still_ringing(["bob", "carol"], call) == ["carol"]
    ended = state.end(call, T0 + 2).call
    assert still_ringing(["bob", "carol"], ended) == []
    assert still_ringing(["bob", "carol"], None) == ["bob", "carol"]


def end(cancel: set[str], missed: set[str]) -> RingEnd:
    return RingEnd(frozenset(cancel), frozenset(missed))


def test_nobody_who_answered_or_declined_missed_the_call_whatever_the_ring_remembered() -> None:
    call = state.join(started("bob", "carol", "dan"), "bob", "bob-laptop", T0 + 1).call
    call = state.decline(call, "carol", "carol-phone", T0 + 2).call
    timed_out = state.ring_timeout(call, T0 + RING_MS).call
    # a ring that missed the answer and the decline (its partition was elsewhere meanwhile)
    assert ring_end(Ring("ada", {"bob", "carol", "dan"}), timed_out, ended=False) == end({"bob", "carol", "dan"},
                                                                                          {"dan"})
    assert ring_end(Ring("ada", {"bob", "dan"}), None, ended=False) == end({"bob", "dan"}, {"bob", "dan"})


def test_who_joined_after_the_ring_ended_is_cancelled_and_missed_nothing() -> None:
    timed_out = state.ring_timeout(state.join(started("bob", "carol"), "bob", "bob-laptop", T0 + 1).call,
                                   T0 + RING_MS).call
    late = state.join(timed_out, "carol", "carol-laptop", T0 + RING_MS + 5_000).call
    assert ring_end(Ring("ada", {"carol"}), late, ended=False) == end({"carol"}, set())


def test_a_rebuilt_ring_ends_with_the_callees_still_unanswered_when_the_timeout_or_the_end_is_its_end() -> None:
    call = state.decline(started("bob", "carol", "dan"), "carol", "carol-phone", T0 + 1).call
    ring = recovered(call)
    assert ring is not None
    everyone = {"bob", "carol", "dan"}  # carol's cancel again: skipped as sent
    assert ring_end(ring, state.ring_timeout(call, T0 + RING_MS).call, ended=False) == end(everyone, {"bob", "dan"})
    # never answered: its end is its ring's end, whenever it comes
    assert ring_end(ring, state.end(call, T0 + 5).call, ended=True) == end(everyone, {"bob", "dan"})
    # answered, then ended before the ring timeout: bob and dan still rang
    answered = state.join(call, "eve", "eve-phone", T0 + 2).call
    assert ring_end(ring, state.end(answered, T0 + RING_MS - 1).call, ended=True) == end(everyone, {"bob", "dan"})


def test_a_rebuilt_ring_of_an_answered_call_ending_after_its_timeout_ended_at_the_timeout() -> None:
    answered = state.join(started("bob", "carol"), "bob", "bob-laptop", T0 + 1).call
    timed_out = state.ring_timeout(answered, T0 + RING_MS).call  # carol's pushes: before the restart
    ring = recovered(timed_out)
    assert ring is not None
    assert ring_end(ring, state.end(timed_out, T0 + RING_MS + 60_000).call, ended=True) == end(set(), set())
    # a ring seen from its start knows it saw no timeout: a timer so late that the end overtook it
    assert ring_end(Ring("ada", {"carol"}), state.end(answered, T0 + RING_MS + 60_000).call,
                    ended=True) == end({"carol"}, {"carol"})
