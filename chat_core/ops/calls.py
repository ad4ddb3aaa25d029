"""Calls, decided by the conversation's writer (docs/adr/0004-calls.md): call.start, call.join,
call.decline, call.leave, call.end and call.settings from members; call.ring_timeout and
call.reconcile (what LiveKit reported, or the calls role's sweep found) from the calls role;
call.remove from instance staff (a user suspended mid-call); and taking a member out of the live
call when it leaves the conversation or is kicked or banned.

Every transition is calls/state.py's. This module checks the policy first (moderation's engine:
who may start, join, end), gives the state machine what it needs (the busy callees, the
conversation's caps), and applies the outcome to the batch: the call stored, its events, who is
in a live call (what makes a callee busy elsewhere), what the calls role must do in the LiveKit
room (a `RoomWork` record in the outbox), and, once per call, its record in the history (a
message of kind `call`). Start and join answer a grant, which the gateway turns into a LiveKit
token: no token goes through the log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec
from msgspec.structs import replace

from calls import state as S
from chat_core.decide import Decision, Operation, Result
from moderation import policy
from moderation.policy import Action, Subject
from parley import events as E
from parley import frames as F
from parley.errors import Conflict, Forbidden, NotFound
from parley.frames import CallRecord, EndReason, Message, call_record_cmid
from parley.ids import new_call_id
from parley.records import (
    Call, Command, ConvState, DropCallMember, EventRecord, InsertMessage, Needs, PutCall, PutCallMember,
    PutCallSettings, RoomWork,
)

if TYPE_CHECKING:
    from chat_core.core import ChatCore


@dataclass(frozen=True, slots=True)
class CallDefaults:
    """The instance's call settings (PARLEY_CALL_*); a conversation's `call.settings` override the caps."""

    ring_timeout_ms: int = 45_000
    max_participants: int = 32
    max_video_subscriptions: int = 9


# ---- what a decision reads ----------------------------------------------------------------


def _call_needs(core: ChatCore, cmd: Command, body: F.CallJoin | F.CallDecline | F.CallLeave | F.CallEnd
                | F.CallRingTimeout | F.CallRemove, needs: Needs) -> None:
    _needs_call(core, cmd.conv, body.call, needs)


def _reconcile_needs(core: ChatCore, cmd: Command, body: F.CallReconcile, needs: Needs) -> None:
    _needs_call(core, cmd.conv, body.event.call, needs)


def _needs_call(core: ChatCore, conv: str, call_id: str, needs: Needs) -> None:
    """The call by id, unless it is the cached conversation's live call (an ended one is read)."""
    state = core.convs.get(conv)
    if state is None or state.call is None or state.call.id != call_id:
        needs.calls.add(call_id)


def _start_needs(core: ChatCore, cmd: Command, body: F.CallStart, needs: Needs) -> None:
    needs.call_members.add(cmd.conv)  # who of the callees is busy in another conversation's call


def _the_call(d: Decision, state: ConvState, call_id: str) -> Call:
    live = state.call
    if live is not None and live.id == call_id:
        return live
    found = d.facts.calls.get(call_id)
    if found is None or found.conv != state.row.id:
        raise NotFound("no such call")
    return found


def _device(d: Decision) -> str:
    edge = d.cmd.edge
    return edge.device if edge is not None and edge.device else d.cmd.session


def _subject(d: Decision, state: ConvState) -> Subject:
    """The policy's facts for a call: the conversation's switch, and in a direct chat the blocks."""
    s = d.subject(state)
    s.calls_enabled = state.call_settings.enabled
    if state.row.kind == "direct" and state.blocks:
        peer = next((u for u in state.members if u != d.cmd.user), None)
        s.blocked, s.blocking = (peer, d.cmd.user) in state.blocks, (d.cmd.user, peer) in state.blocks
    return s


def _max_participants(d: Decision, state: ConvState) -> int:
    return state.call_settings.max_participants or d.core.calls.max_participants


# ---- applying an outcome ------------------------------------------------------------------


_encode_work = msgspec.json.Encoder().encode


def _apply(d: Decision, state: ConvState, before: Call | None, out: S.Outcome) -> None:
    """The batch's share of a transition; for a no-op, at most work in the room (a removed
    member's new connection to put out, an ended call's room to close again)."""
    call, batch, conv = out.call, d.batch, state.row.id
    if out.noop is None:
        _store(d, state, before, out)
    if out.remove or out.close_room:  # after the events: clients hear why before LiveKit puts them out
        work = RoomWork(call=call.id, remove=out.remove, close=out.close_room)
        batch.events.append(EventRecord(conv, _encode_work(work), to=[], t_ns=batch.t_ns))


def _store(d: Decision, state: ConvState, before: Call | None, out: S.Outcome) -> None:
    """The call as it now is, who takes part in it, its events and, when it ended, its record."""
    call, batch, conv = out.call, d.batch, state.row.id
    batch.mutations.append(PutCall(call))
    state.call = call if call.live else None
    was_in = before.in_call if before is not None and before.live else frozenset()
    now_in = call.in_call if call.live else frozenset()
    batch.mutations.extend(PutCallMember(user, call.id, conv) for user in sorted(now_in - was_in))
    batch.mutations.extend(DropCallMember(user, call.id) for user in sorted(was_in - now_in))
    for event in out.events:
        # A member moderation took out hears it too: it is no member by the time it is delivered.
        batch.emit(conv, event, also=[event.user] if isinstance(event, E.CallLeft) and event.removed else None)
    if out.record is not None:
        _record(d, state, out.record)


def _record(d: Decision, state: ConvState, record: CallRecord) -> None:
    """The call's one message of kind `call`, sent as its initiator sends (its cursor moves)."""
    row, batch, conv = state.row, d.batch, state.row.id
    key = (conv, record.initiator, call_record_cmid(record.call))
    if key in d.core.idem or key in batch.assigned or key in d.facts.idem:
        return  # stored by an earlier try whose call state was not (a store that failed between the two)
    row.last_seq += 1
    msg = Message(conv=conv, seq=row.last_seq, sender=record.initiator, ts=d.now, cmid=key[2],
                  text=_summary(record), kind="call", call=record)
    member = state.members.get(record.initiator)
    if member is not None:
        member.read_seq = msg.seq
        batch.cursors.add((conv, record.initiator))
    batch.assigned[key] = (msg.seq, msg.ts)
    batch.heads.add(conv)
    batch.mutations.append(InsertMessage(msg))
    batch.emit(conv, E.MessageNew(message=msg))


def _summary(record: CallRecord) -> str:
    """The record's `text`, for clients that do not know calls yet."""
    media = record.media.value
    if record.reason is EndReason.MISSED:
        return f"Missed {media} call"
    if record.reason is EndReason.DECLINED:
        return f"Declined {media} call"
    if record.reason is EndReason.BUSY:
        return f"{media.capitalize()} call: busy"
    seconds = record.duration // 1000
    took = f"{seconds // 60}:{seconds % 60:02d}"
    return f"{media.capitalize()} call failed after {took}" if record.reason is EndReason.FAILED \
        else f"{media.capitalize()} call, {took}"


def call_view(call: Call) -> E.CallView:
    return E.CallView(id=call.id, conv=call.conv, media=call.media, state=call.state, initiator=call.initiator,
                      direct=call.direct, max_participants=call.max_participants, started_at=call.started_at,
                      ring_deadline=call.ring_deadline, ringing=sorted(call.ringing),
                      participants=sorted(call.in_call if call.live else call.accepted | {call.initiator}),
                      in_room=sorted(call.in_room),
                      answered_at=call.answered_at, ended_at=call.ended_at, end_reason=call.end_reason,
                      duration=call.duration)


def _granted(d: Decision, state: ConvState, call: Call) -> E.CallResult:
    """The call, and what the caller's device may do in its room: in a channel only those who may
    start a call speak (admins), subscribers listen."""
    member = state.members.get(d.cmd.user)
    speaker = state.row.kind != "channel" or (
        member is not None and policy.may(state.row, member, Action.START_CALL, d.core.instance))
    videos = state.call_settings.max_video_subscriptions
    grant = E.CallGrant(role="speaker" if speaker else "listener",
                        max_video_subscriptions=d.core.calls.max_video_subscriptions if videos is None else videos)
    return E.CallResult(rid=d.rid, call=call_view(call), grant=grant)


# ---- the operations -----------------------------------------------------------------------


def _start(d: Decision, body: F.CallStart) -> Result:
    cmd = d.cmd
    state = d.conv()
    live = state.call
    if live is not None:  # the conversation's call is on: calling it is joining it
        return _join_live(d, state, live)
    d.check(_subject(d, state), Action.START_CALL)
    row = state.row
    most = _max_participants(d, state)
    others = [u for u in state.members if u != cmd.user]
    if row.kind == "direct" and not others:
        raise Conflict("the other side has left this conversation")
    # A channel, or a group larger than a call, is a live room: nobody is rung, members join.
    callees = others if row.kind == "direct" or (row.kind == "group" and len(state.members) <= most) else []
    out = S.start(call_id=new_call_id(row.id), conv=row.id, media=body.media, initiator=cmd.user, device=_device(d),
                  callees=callees, direct=row.kind == "direct", max_participants=most,
                  ring_timeout_ms=d.core.calls.ring_timeout_ms, now=d.now,
                  busy=[u for u in callees if d.facts.in_calls.get(u)])
    _apply(d, state, None, out)
    return _granted(d, state, out.call)


def _join(d: Decision, body: F.CallJoin) -> Result:
    state = d.conv()
    policy.member_or_hide(state.row, state.members.get(d.cmd.user))
    return _join_live(d, state, _the_call(d, state, body.call))


def _join_live(d: Decision, state: ConvState, call: Call) -> Result:
    """Every join checks the policy again: a member muted, blocked or banned since may not."""
    d.check(_subject(d, state), Action.JOIN_CALL)
    out = S.join(call, d.cmd.user, _device(d), d.now)
    _apply(d, state, call, out)
    return _granted(d, state, out.call)


def _member_action(d: Decision, call_id: str) -> tuple[ConvState, Call]:
    state = d.conv()
    policy.member_or_hide(state.row, state.members.get(d.cmd.user))
    return state, _the_call(d, state, call_id)


def _decline(d: Decision, body: F.CallDecline) -> Result:
    state, call = _member_action(d, body.call)
    out = S.decline(call, d.cmd.user, _device(d), d.now)
    _apply(d, state, call, out)
    return E.CallResult(rid=d.rid, call=call_view(out.call))


def _leave(d: Decision, body: F.CallLeave) -> Result:
    state, call = _member_action(d, body.call)
    out = S.leave(call, d.cmd.user, _device(d), d.now)
    _apply(d, state, call, out)
    return E.CallResult(rid=d.rid, call=call_view(out.call))


def _end(d: Decision, body: F.CallEnd) -> Result:
    """Over for everyone: by its initiator, by either side of a direct call, or by whoever may
    change the conversation's settings (its admins, instance staff)."""
    state, call = _member_action(d, body.call)
    user = d.cmd.user
    if call.live and user != call.initiator and not (call.direct and user in call.in_call):
        denial = policy.decide(d.subject(state), Action.SET_INFO, d.core.instance)
        if denial is not None:
            raise Forbidden("only its initiator, or an admin of the conversation, ends a call for everyone; "
                            "leave it instead", rule="call_end")
    out = S.end(call, d.now)
    _apply(d, state, call, out)
    return E.CallResult(rid=d.rid, call=call_view(out.call))


def _settings(d: Decision, body: F.CallSettingsUpdate) -> Result:
    state = d.conv()
    d.check(d.subject(state), Action.SET_INFO)
    given = {name: value for name in ("enabled", "max_participants", "max_video_subscriptions")
             if (value := getattr(body, name)) is not F.UNSET}
    new = replace(state.call_settings, **given)
    conv = state.row.id
    if new != state.call_settings:
        state.call_settings = new
        d.batch.mutations.append(PutCallSettings(conv, new))
        d.audit_moderator("call.settings", conv, None, **given)
    return E.CallSettingsResult(rid=d.rid, conv=conv, enabled=new.enabled, max_participants=new.max_participants,
                                max_video_subscriptions=new.max_video_subscriptions)


def _ring_timeout(d: Decision, body: F.CallRingTimeout) -> Result:
    state = d.conv()
    call = _the_call(d, state, body.call)
    _apply(d, state, call, S.ring_timeout(call, d.now))
    return None


def _reconcile(d: Decision, body: F.CallReconcile) -> Result:
    state = d.conv()
    call = _the_call(d, state, body.event.call)
    _apply(d, state, call, S.reconcile(call, body.event, d.now))
    return None


def _remove(d: Decision, body: F.CallRemove) -> Result:
    """Instance staff take a suspended user out of a call (its sessions out of the room), as
    a kick does, though it stays a member of the conversation."""
    if d.cmd.instance_role not in policy.STAFF_ROLES:
        raise Forbidden("only instance staff take someone out of a call", rule="call_remove")
    state = d.conv()
    call = _the_call(d, state, body.call)
    out = S.remove(call, body.user, d.now)
    _apply(d, state, call, out)
    return E.CallResult(rid=d.rid, call=call_view(out.call))


def take_out_of_call(d: Decision, state: ConvState, user: str) -> None:
    """`user` leaves the conversation, or moderation removes it: it leaves the live call (its
    devices are put out of the room) and may not come back into it."""
    call = state.call
    if call is not None:
        _apply(d, state, call, S.remove(call, user, d.now))


START = Operation(F.CallStart, _start, _start_needs)
JOIN = Operation(F.CallJoin, _join, _call_needs)
DECLINE = Operation(F.CallDecline, _decline, _call_needs)
LEAVE = Operation(F.CallLeave, _leave, _call_needs)
END = Operation(F.CallEnd, _end, _call_needs)
SETTINGS = Operation(F.CallSettingsUpdate, _settings)
RING_TIMEOUT = Operation(F.CallRingTimeout, _ring_timeout, _call_needs)
RECONCILE = Operation(F.CallReconcile, _reconcile, _reconcile_needs)
REMOVE = Operation(F.CallRemove, _remove, _call_needs)
