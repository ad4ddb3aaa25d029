"""The call state machine: one call's lifecycle as pure code (values in, values out).

Every transition takes the call as it is stored and `now` (ms since the epoch, handed in: nothing
here reads a clock or does I/O) and returns an `Outcome`: the new call, the events to announce,
the history record when the call has just ended, and what the calls role must do in LiveKit. A
transition that does not apply (repeated, stale, out of order, too early) returns the very same
call with `noop` saying why, so replays of the command log and duplicate webhooks are harmless.

Users and devices: ringing, accepting, declining and leaving are per user (every device of a
callee rings; answering or declining on one device settles the user, and the others stop).
Presence in the LiveKit room is per device session (LiveKit's participant `sid`), as webhooks
report it; a user is in the room while any of its devices is.

A call ends once: when its last participant leaves (in a direct call, when either side leaves),
when nobody answered before the ring timeout, when every callee declined or was busy, on
`call.end`, or when LiveKit reports the room finished.

The call, what it announces and what the room reports are the kernel's (parley.records,
parley.events, parley.frames: chat_core stores them, clients and webhooks speak them); only the
transitions are here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from msgspec.structs import replace

from parley.errors import Conflict, Forbidden
from parley.events import (AnyCallEvent, CallAccepted, CallDeclined, CallEnded, CallJoined, CallLeft,
                           CallRinging)
from parley.frames import (CallRecord, CallState, EndReason, Media, ParticipantJoined, ParticipantLeft,
                           RoomEvent, RoomFinished, RoomListed)
from parley.records import Call, RoomSession

@dataclass(frozen=True, slots=True)
class Outcome:
    """What a transition decided. `call` is the input itself when `noop` is set."""

    call: Call
    events: tuple[AnyCallEvent, ...] = ()
    #: Set exactly once per call: by the transition that ended it.
    record: CallRecord | None = None
    #: Sessions the calls role removes from the room (RoomService remove_participant).
    remove: tuple[RoomSession, ...] = ()
    #: The call is over: the calls role deletes its room (and whoever is still in it).
    close_room: bool = False
    #: Why nothing changed; None when the call changed.
    noop: str | None = None


# ---- transitions --------------------------------------------------------------------------


def start(*, call_id: str, conv: str, media: Media, initiator: str, device: str, callees: Iterable[str],
          direct: bool, max_participants: int, ring_timeout_ms: int, now: int,
          busy: Iterable[str] = (), live: Call | None = None) -> Outcome:
    """A new call from `initiator`, ringing every callee except those `busy` in another call.

    `live` is the conversation's live call, if any: a second start returns it unchanged, except
    when its initiator is rung by it (both called each other at once): then the start answers it.
    A call nobody is rung for (a channel's live room) is active at once.
    """
    if live is not None and live.state is not CallState.ENDED:
        if initiator in live.ringing:
            return join(live, initiator, device, now)
        return _unchanged(live, "a call is live in this conversation")
    if max_participants < 2:
        raise ValueError(f"a call needs room for at least 2 participants, not {max_participants}")
    invited = frozenset(callees) - {initiator}
    busy_now = frozenset(busy) & invited
    ringing = invited - busy_now
    call = Call(id=call_id, conv=conv, media=media, initiator=initiator, direct=direct,
                max_participants=max_participants,
                state=CallState.RINGING if invited else CallState.ACTIVE, started_at=now,
                ring_deadline=now + ring_timeout_ms, invited=invited, ringing=ringing, busy=busy_now,
                answered_at=None if invited else now)
    events: tuple[AnyCallEvent, ...] = (
        CallRinging(call=call_id, conv=conv, media=media, initiator=initiator, ringing=tuple(sorted(ringing)),
                    ring_deadline=call.ring_deadline),
        *(CallDeclined(call=call_id, conv=conv, user=user, busy=True) for user in sorted(busy_now)),
    )
    if busy_now and not ringing:
        return _finish(call, now, EndReason.BUSY, events)
    return Outcome(call, events)


def join(call: Call, user: str, device: str, now: int) -> Outcome:
    """`call.join`: the user answers (or joins a call in progress) on `device`.

    Raises Conflict for an ended or full call, Forbidden for a user moderation removed from it.
    Another device of a user already in the call changes nothing (it still gets a token)."""
    if call.state is CallState.ENDED:
        raise Conflict("the call has ended")
    if user in call.removed:
        raise Forbidden("you were removed from this call", rule="call_removed")
    if user in call.in_call:
        return _unchanged(call, "already in the call")
    if len(call.in_call) >= call.max_participants:
        raise Conflict(f"the call is full ({call.max_participants} participants)")
    return Outcome(_answered(call, user, now), (CallAccepted(call=call.id, conv=call.conv, user=user, device=device),))


def decline(call: Call, user: str, device: str, now: int) -> Outcome:
    """`call.decline` on `device`: the user's devices stop ringing. Harmless when the call does
    not ring for the user (any more): a device may decline what another device settled."""
    if call.state is CallState.ENDED:
        return _unchanged(call, "the call has ended")
    if user not in call.ringing:
        return _unchanged(call, "the call does not ring for this user")
    settled = replace(call, ringing=call.ringing - {user}, declined=call.declined | {user})
    return _settle(settled, now, CallDeclined(call=call.id, conv=call.conv, user=user, device=device))


def callee_busy(call: Call, user: str, now: int) -> Outcome:
    """A ringing callee turned out to be in another live call: it stops ringing, as `busy`."""
    if call.state is CallState.ENDED:
        return _unchanged(call, "the call has ended")
    if user not in call.ringing:
        return _unchanged(call, "the call does not ring for this user")
    settled = replace(call, ringing=call.ringing - {user}, busy=call.busy | {user})
    return _settle(settled, now, CallDeclined(call=call.id, conv=call.conv, user=user, busy=True))


def leave(call: Call, user: str, device: str, now: int) -> Outcome:
    """`call.leave`: the user hangs up (all its devices: the calls role removes the others from
    the room). The initiator leaving before anyone answered cancels the call (missed)."""
    if call.state is CallState.ENDED:
        return _unchanged(call, "the call has ended")
    if user not in call.in_call:
        return _unchanged(call, "not in the call")
    out, sessions = _out_of_call(call, user)
    return _after_leaving(out, now, CallLeft(call=call.id, conv=call.conv, user=user, device=device), sessions)


def remove(call: Call, user: str, now: int) -> Outcome:
    """Moderation took the user out (kicked or banned mid-call): it stops ringing or leaves, its
    sessions are removed from the room, and it may not come back into this call."""
    if call.state is CallState.ENDED:
        return _unchanged(call, "the call has ended")
    if user in call.removed:
        return _unchanged(call, "already removed")
    event = CallLeft(call=call.id, conv=call.conv, user=user, removed=True)
    if user in call.ringing:
        return _settle(replace(call, ringing=call.ringing - {user}, removed=call.removed | {user}), now, event)
    if user not in call.accepted | {call.initiator}:
        return _unchanged(call, "not in the call")
    out, sessions = _out_of_call(replace(call, removed=call.removed | {user}), user)
    if user not in call.in_call:
        # It had left already: nothing to announce, but a still-valid token must not bring it back.
        return Outcome(out)
    return _after_leaving(out, now, event, sessions)


def end(call: Call, now: int, *, failed: bool = False) -> Outcome:
    """`call.end` (or the calls role giving up on the media: `failed`): over for everyone."""
    if call.state is CallState.ENDED:
        return _unchanged(call, "the call has ended")
    return _finish(call, now, EndReason.FAILED if failed else _over(call))


def ring_timeout(call: Call, now: int) -> Outcome:
    """The ring timer fired: an unanswered call ends as missed; in a call already answered, the
    callees still ringing stop. Early or repeated timers change nothing, so a writer may re-arm
    its timers from `ring_deadline` after a restart and fire them as often as it likes."""
    if call.state is CallState.ENDED:
        return _unchanged(call, "the call has ended")
    if not call.ringing:
        return _unchanged(call, "nobody is ringing")
    if now < call.ring_deadline:
        return _unchanged(call, "the ring timeout has not passed")
    if call.state is CallState.RINGING:
        return _finish(replace(call, ringing=frozenset()), now, EndReason.MISSED)
    return Outcome(replace(call, ringing=frozenset()),
                   (CallRinging(call=call.id, conv=call.conv, media=call.media, initiator=call.initiator, ringing=(),
                                ring_deadline=call.ring_deadline),))


def reconcile(call: Call, event: RoomEvent, now: int) -> Outcome:
    """Apply what LiveKit reported (a verified webhook, or the calls role's sweep of the room).
    Duplicates and out-of-order deliveries are harmless: a session is known by its sid, and a
    session that left never comes back."""
    if isinstance(event, ParticipantJoined):
        return _participant_joined(call, RoomSession(event.user, event.device, event.sid), now)
    if isinstance(event, ParticipantLeft):
        return _participant_left(call, RoomSession(event.user, event.device, event.sid), event.replaced, now)
    if isinstance(event, RoomListed):
        return _room_listed(call, event, now)
    if call.state is CallState.ENDED:
        return _unchanged(call, "the call has ended")
    return _finish(call, now, EndReason.FAILED if event.failed else _over(call))


# ---- the parts ------------------------------------------------------------------------------


def _participant_joined(call: Call, session: RoomSession, now: int) -> Outcome:
    if call.state is CallState.ENDED:
        # A token outlives its call: the join recreated the room, which goes again.
        return Outcome(call, noop="the call has ended", close_room=True)
    if session.user in call.removed:
        return Outcome(call, noop="removed from this call", remove=(session,))
    if session.sid in call.gone:
        return _unchanged(call, "this session has already left")
    if session in call.present:
        return _unchanged(call, "already in the room")
    # An older session of the same device is over: LiveKit admits one connection per identity.
    older = {s for s in call.present if (s.user, s.device) == (session.user, session.device)}
    out = replace(call, present=(call.present - older) | {session}, in_room=call.in_room | {session.user},
                  gone=call.gone | {s.sid for s in older})
    events: list[AnyCallEvent] = []
    if session.user not in out.in_call:
        # Back with a token that is still valid after leaving (a group call goes on without it).
        out = _answered(out, session.user, now)
        events.append(CallAccepted(call=call.id, conv=call.conv, user=session.user, device=session.device))
    if session.user not in call.in_room:
        events.append(CallJoined(call=call.id, conv=call.conv, user=session.user, device=session.device))
    return Outcome(out, tuple(events))


def _participant_left(call: Call, session: RoomSession, replaced: bool, now: int) -> Outcome:
    if call.state is CallState.ENDED:
        return _unchanged(call, "the call has ended")
    if session.sid in call.gone:
        return _unchanged(call, "this session has already left")
    if session not in call.present:
        # The leave overtook its join: remember the session, so that the join changes nothing.
        return Outcome(replace(call, gone=call.gone | {session.sid}))
    out = replace(call, present=call.present - {session}, gone=call.gone | {session.sid})
    if replaced or any(s.user == session.user for s in out.present):
        return Outcome(out)
    return _after_leaving(replace(out, left=out.left | {session.user}, in_room=out.in_room - {session.user}), now,
                          CallLeft(call=call.id, conv=call.conv, user=session.user, device=session.device), ())


def _room_listed(call: Call, listed: RoomListed, now: int) -> Outcome:
    """The sweep's listing, for webhooks LiveKit lost: a room that is gone ends the call; a
    session missing from two listings in a row left (as its lost `participant_left` would have
    said). Once is not enough: a session may have joined between the listing and this decision."""
    if call.state is CallState.ENDED:
        return _unchanged(call, "the call has ended")
    if call.state is CallState.RINGING:
        return _unchanged(call, "nobody has answered yet")
    if not listed.exists:
        return _finish(call, now, _over(call))
    found = frozenset(listed.sids)
    missing = sorted(s for s in call.present if s.sid not in found)
    left = [s for s in missing if s.sid in call.unseen]
    unseen = frozenset(s.sid for s in missing) - {s.sid for s in left}
    if not left and unseen == call.unseen:
        return _unchanged(call, "the room has everyone the call has")
    out = Outcome(replace(call, unseen=unseen))
    events: list[AnyCallEvent] = []
    for session in left:
        out = _participant_left(out.call, session, False, now)
        events.extend(out.events)
        if out.call.state is CallState.ENDED:
            break
    return Outcome(out.call, tuple(events), record=out.record, close_room=out.close_room)


def _answered(call: Call, user: str, now: int) -> Call:
    """`user` takes part from now on; the first answer makes the call active."""
    answered_at = call.answered_at if call.answered_at is not None else max(now, call.started_at)
    return replace(call, state=CallState.ACTIVE, answered_at=answered_at, ringing=call.ringing - {user},
                   declined=call.declined - {user}, busy=call.busy - {user}, accepted=call.accepted | {user},
                   left=call.left - {user})


def _settle(call: Call, now: int, event: AnyCallEvent) -> Outcome:
    """A callee stopped ringing without answering: the last one of an unanswered call ends it."""
    if call.state is CallState.RINGING and not call.ringing:
        reason = EndReason.DECLINED if call.declined else EndReason.BUSY if call.busy else EndReason.MISSED
        return _finish(call, now, reason, (event,))
    return Outcome(call, (event,))


def _after_leaving(call: Call, now: int, event: AnyCallEvent, removed: tuple[RoomSession, ...]) -> Outcome:
    """A user left: the call is over when nobody is left in it, or when a side of a direct call
    that was answered hangs up."""
    if not call.in_call or (call.direct and call.state is CallState.ACTIVE):
        return _finish(call, now, _over(call), (event,))
    return Outcome(call, (event,), remove=removed)


def _over(call: Call) -> EndReason:
    return EndReason.HANGUP if call.answered_at is not None else EndReason.MISSED


def _finish(call: Call, now: int, reason: EndReason, events: tuple[AnyCallEvent, ...] = ()) -> Outcome:
    # Writers on different hosts may disagree about the time: a call never ends before it began.
    ended_at = max(now, call.answered_at if call.answered_at is not None else call.started_at)
    ended = replace(call, state=CallState.ENDED, ringing=frozenset(), present=frozenset(), in_room=frozenset(),
                    ended_at=ended_at, end_reason=reason)
    record = CallRecord(call=call.id, media=call.media, initiator=call.initiator,
                        participants=tuple(sorted(call.accepted | {call.initiator})), reason=reason,
                        started_at=call.started_at, ended_at=ended_at, duration=ended.duration,
                        missed=reason is EndReason.MISSED)
    return Outcome(ended, (*events, CallEnded(call=call.id, conv=call.conv, reason=reason, duration=ended.duration)),
                   record=record, close_room=True)


def _out_of_call(call: Call, user: str) -> tuple[Call, tuple[RoomSession, ...]]:
    """`user` leaves the call and the room; the sessions the calls role removes from the room."""
    sessions = frozenset(s for s in call.present if s.user == user)
    out = replace(call, left=call.left | {user}, in_room=call.in_room - {user}, present=call.present - sessions,
                  gone=call.gone | {s.sid for s in sessions})
    return out, tuple(sorted(sessions))


def _unchanged(call: Call, why: str) -> Outcome:
    return Outcome(call, noop=why)
