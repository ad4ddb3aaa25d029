"""Call pushes across a restart of the push decision (delivery/push_decider.py,
delivery/call_rings.py): the new decision reads the event log again from the last commit, while
the store already holds everything the writer decided since, so the events it reads may be older
than the stored call. No cancel is lost, nobody who answered is told they missed the call, and a
push sent again has the dedup key of the first (push/marks.py skips it)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import msgspec
import pytest

from calls import state
from delivery.push_decider import PushDecider
from parley.events import encode_event
from parley.frames import Media
from parley.records import Call, EventRecord, RoomWork
from push.notification import PushRequest
from tests.unit.test_push_calls import Out, Presence, Store, device

T0, RING_MS = 1_000_000, 45_000


class Writer:
    """The conversation's writer of one call (calls/state.py): it stores each transition's call
    where the decision reads it, and appends its events to the log."""

    def __init__(self, store: Store, *callees: str, call_id: str = "c1-k1") -> None:
        self.store = store
        self.log: list[EventRecord] = []
        self.call = self._apply(state.start(call_id=call_id, conv="c1", media=Media.AUDIO, initiator="ada",
                                            device="ada-phone", callees=callees, direct=False, max_participants=8,
                                            ring_timeout_ms=RING_MS, now=T0))

    def _apply(self, outcome: state.Outcome) -> Call:
        self.call = outcome.call
        self.store.calls[outcome.call.id] = outcome.call
        self.log += [EventRecord("c1", encode_event(e)) for e in outcome.events]
        return outcome.call

    def join(self, user: str, at: int) -> None:
        self._apply(state.join(self.call, user, user + "-laptop", at))

    def decline(self, user: str, at: int) -> None:
        self._apply(state.decline(self.call, user, user + "-phone", at))

    def leave(self, user: str, at: int) -> None:
        self._apply(state.leave(self.call, user, user + "-phone", at))

    def time_out(self) -> None:
        self._apply(state.ring_timeout(self.call, T0 + RING_MS))

    def end(self, at: int) -> None:
        self._apply(state.end(self.call, at))


class CountingStore(Store):
    """Counts the reads of calls by id."""

    def __init__(self) -> None:
        super().__init__([device(u, u, "fcm") for u in ("bob", "carol", "dan")])
        self.call_reads = 0

    async def call(self, call_id: str) -> Call | None:
        self.call_reads += 1
        return await super().call(call_id)


def decider(store: Store, out: Out) -> PushDecider:
    return PushDecider(store, Presence(), out, window_s=20)  # type: ignore[arg-type]


def pushes(requests: Sequence[PushRequest]) -> list[tuple[str, str]]:
    """(device, kind) of each push; a missed-call push is of kind `message`."""
    return [(r.device_id, r.kind) for r in requests]


async def test_a_ring_that_ends_after_the_restart_is_cancelled_and_pushed_as_missed_to_who_still_rang() -> None:
    store, before, after = CountingStore(), Out(), Out()
    writer = Writer(store, "bob", "carol", "dan")
    await decider(store, before).decide(writer.log)  # committed: the ring went out
    committed = len(writer.log)
    writer.decline("carol", T0 + 1_000)
    writer.leave("ada", T0 + 2_000)  # the caller hangs up: over, unanswered
    await decider(store, after).decide(writer.log[committed:])
    assert pushes(after.requests) == [("carol", "call_cancel"), ("bob", "call_cancel"), ("dan", "call_cancel"),
                                      ("bob", "message"), ("dan", "message")]


async def test_a_ring_read_again_rings_only_who_still_rings_and_cancels_who_answered_since() -> None:
    store, before, after = CountingStore(), Out(), Out()
    writer = Writer(store, "bob", "carol")
    writer.join("bob", T0 + 1_000)  # the decision stopped before committing these
    await decider(store, before).decide(writer.log)  # its ring and cancel may have gone out
    restarted = decider(store, after)
    await restarted.decide(writer.log)  # read again, with bob in the call by now
    assert pushes(after.requests) == [("carol", "call"), ("bob", "call_cancel")]
    assert {r.dedup_key() for r in after.requests} <= {r.dedup_key() for r in before.requests}
    after.requests.clear()
    writer.time_out()
    await restarted.decide(writer.log[-1:])
    assert pushes(after.requests) == [("carol", "call_cancel"), ("carol", "message")]


async def test_a_ring_that_timed_out_before_the_restart_is_not_pushed_as_missed_again() -> None:
    store, before, after = CountingStore(), Out(), Out()
    writer = Writer(store, "bob", "carol")
    writer.join("bob", T0 + 1_000)
    writer.time_out()
    await decider(store, before).decide(writer.log)
    assert ("carol", "message") in pushes(before.requests)
    committed = len(writer.log)
    writer.leave("bob", T0 + RING_MS + 60_000)
    writer.end(T0 + RING_MS + 61_000)
    await decider(store, after).decide(writer.log[committed:])
    # bob's cancel again (skipped as sent), and no second missed-call push to carol
    assert pushes(after.requests) == [("bob", "call_cancel")]
    assert {r.dedup_key() for r in after.requests} <= {r.dedup_key() for r in before.requests}


async def test_a_timeout_read_again_pushes_the_missed_call_to_who_had_not_answered() -> None:
    store, out = CountingStore(), Out()
    writer = Writer(store, "bob", "carol", "dan")
    committed = len(writer.log)
    writer.join("bob", T0 + 1_000)
    writer.decline("dan", T0 + 2_000)
    writer.time_out()
    writer.join("carol", T0 + RING_MS + 5_000)  # carol joins late: she did not miss the call after all
    await decider(store, out).decide(writer.log[committed:])
    assert [p for p in pushes(out.requests) if p[1] == "message"] == []
    assert pushes(out.requests) == [("bob", "call_cancel"), ("dan", "call_cancel"), ("carol", "call_cancel")]


async def test_a_call_that_rang_nobody_or_whose_ring_ended_is_not_read_from_the_store_again() -> None:
    store, out = CountingStore(), Out()
    live_room = Writer(store, call_id="c1-k1")  # a channel's live room: nobody rings
    live_room.join("bob", T0 + 1_000)
    live_room.leave("bob", T0 + 2_000)
    restarted = decider(store, out)
    await restarted.decide(live_room.log)
    assert out.requests == [] and store.call_reads == 1
    writer = Writer(store, "bob", call_id="c1-k2")
    await restarted.decide(writer.log)
    store.call_reads = 0
    writer.decline("bob", T0 + 1_000)  # the last callee: the call is over
    await restarted.decide(writer.log[1:])
    assert store.call_reads == 1  # who still rang at the end
    await restarted.decide(writer.log[1:])  # read again: the ring is over
    assert pushes(out.requests) == [("bob", "call"), ("bob", "call_cancel")] and store.call_reads == 1


async def test_the_calls_roles_room_work_in_the_log_pushes_nothing_and_reads_nothing(
        caplog: pytest.LogCaptureFixture) -> None:
    store, out = CountingStore(), Out()
    work = EventRecord("c1", msgspec.json.encode(RoomWork(call="c1-k1", close=True)), to=[])
    await decider(store, out).decide([work])
    assert out.requests == [] and store.call_reads == 0
    assert [r.message for r in caplog.records if r.levelno >= logging.WARNING] == []
