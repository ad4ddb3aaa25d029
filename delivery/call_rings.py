"""The rings of calls as the push decision (delivery/push_decider.py) keeps them: who calls and
which callees' phones may still ring, so that the end of a ring cancels it and tells who missed
the call; rebuilt from the stored call when the decision did not see the ring start.

The decision learns of a ring from the call's `call.ringing`. After a restart it reads the log
again from its last commit, so a call that started before that commit arrives without its start
(as it also does to the decision a partition moved to): `recovered` rebuilds its ring from the
call as the store has it now. Events read again may also be older than the store (a `call.ringing`
for a call answered since, a `call.ended` for a call whose ring had timed out before): who still
rings comes from the store too (`still_ringing`, `ring_end`). Values in, values out: the
decision does the reads and the pushes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from parley.records import Call


@dataclass(slots=True)
class Ring:
    """A call ringing by push: who calls, and the callees whose phones may still ring."""

    initiator: str
    rung: set[str] = field(default_factory=set)
    #: Rebuilt from the store (`recovered`), not seen to start: whether its ring outlived an
    #: earlier timeout is then the store's to tell (`ring_end`).
    recovered: bool = False


def unanswered(call: Call) -> frozenset[str]:
    """The callees who never answered, declined, were busy or were taken out: while the call
    rings, those still ringing; once its ring is over, those who missed it (less any who joined
    the call afterwards, who did not)."""
    return call.invited - call.accepted - call.declined - call.busy - call.removed


def still_ringing(callees: Iterable[str], call: Call | None) -> list[str]:
    """The callees of a `call.ringing` whose phones should ring now: those the stored call still
    rings (a start read again after a restart may be older than the answers that followed it).
    None: the call is not in the store (the writer stores a call before its events, so never
    in practice): all of them."""
    return [u for u in callees if call is None or u in call.ringing]


def recovered(call: Call | None) -> Ring | None:
    """The ring of a call the decision did not see start, from the call as stored now; None when
    nothing of it rings by push (no such call, or a call that rang nobody: a channel's live room).
    Every callee counts as rung: one who stopped ringing before the decision's last commit had
    their cancel then and gets the same cancel again, which the push worker skips (the same
    dedup key, push/marks.py); one who stopped after is cancelled as their event is read again."""
    if call is None or not call.invited:
        return None
    return Ring(call.initiator, set(call.invited), recovered=True)


@dataclass(frozen=True, slots=True)
class RingEnd:
    """What the end of a ring owes: a `call_cancel` to the callees it may still ring, and a
    missed-call push to those of them who never answered."""

    cancel: frozenset[str]
    missed: frozenset[str]


def ring_end(ring: Ring, call: Call | None, *, ended: bool) -> RingEnd:
    """The end of `ring`, by `call.ended` if `ended`, else by `call.ringing` with nobody left (the
    timeout of a call that goes on). `call` is the call as stored now: nobody who answered,
    declined or was taken out by then missed the call, whatever the ring remembered (one who
    joined after the ring ended is still cancelled: their phones rang until then). None (not in
    the store, never in practice): the ring as remembered."""
    rung = frozenset(ring.rung)
    if call is None:
        return RingEnd(rung, rung)
    if ring.recovered and ended and not _rang_until_ended(call):
        return RingEnd(frozenset(), frozenset())
    return RingEnd(rung, rung & unanswered(call))


def _rang_until_ended(call: Call) -> bool:
    """Whether the ring of an ended call lasted until its end: it was never answered (its end is
    its ring's), or it ended before its ring timeout. Otherwise the timeout ended the ring first,
    with a `call.ringing` the decision handled before its last commit (it would have seen it
    since): its callees were cancelled then. A timer late past the deadline that the end overtook
    is taken for such a timeout: the phones stop by their own timeout then, and the missed-call
    push is not sent."""
    return call.answered_at is None or (call.ended_at is not None and call.ended_at < call.ring_deadline)
