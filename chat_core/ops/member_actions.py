"""Moderators acting on one member (parley.frames.MemberAction): member.role, and the sanctions
mute/unmute, kick and ban/unban. The actor must outrank the member, and never acts on themself."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chat_core.decide import Decision, Operation, Result, put_mute, remove_member, shown_until
from chat_core.ops.calls import take_out_of_call
from moderation.policy import FOREVER, Action
from parley import events as E
from parley import frames as F
from parley.errors import BadRequest, Forbidden, NotFound
from parley.records import Command, ConvState, DropSanction, MemberRow, Needs, PutMember, PutSanction, SanctionRow, \
    SetConvOwner

if TYPE_CHECKING:
    from chat_core.core import ChatCore


def _on_member(d: Decision, state: ConvState, target: str, action: Action,
               new_role: str | None = None) -> MemberRow | None:
    """Decide an action on `target` (the actor must outrank them); their membership, if any."""
    s = d.subject(state)
    member = state.members.get(target)
    s.target_role = member.role if member else None
    s.new_role = new_role
    d.check(s, action)
    if target == d.cmd.user:
        raise BadRequest("moderation acts on other members, not on yourself")
    return member


def _on_present_member(d: Decision, state: ConvState, target: str, action: Action,
                       new_role: str | None = None) -> MemberRow:
    """`_on_member` for actions only a member can be the target of."""
    member = _on_member(d, state, target, action, new_role)
    if member is None:
        raise NotFound("that user is not a member of this conversation")
    return member


def _role(d: Decision, body: F.MemberRole) -> Result:
    cmd, batch = d.cmd, d.batch
    state = d.conv()
    row = state.row
    member = _on_present_member(d, state, body.user, Action.MANAGE_ROLES, body.role)
    if member.role == body.role:
        return None
    if member.role == "owner":  # only a handover moves the owner (instance staff included)
        raise Forbidden("the owner's role changes only when they hand ownership to someone else", rule="owner")
    old = member.role
    changed = [member]
    if body.role == "owner":  # a handover: the old owner stays on as admin
        previous = state.members.get(row.owner)
        if previous is not None:
            previous.role = "admin"
            changed.append(previous)
        row.owner = member.user
        batch.mutations.append(SetConvOwner(row.id, member.user))
    member.role = body.role
    for m in changed:
        batch.mutations.append(PutMember(m))
        batch.emit(row.id, E.MemberUpdated(conv=row.id, user=m.user, role=m.role, by=cmd.user))
        batch.emit(row.id, E.ConvUpdated(conv=state.view(m.user)), to=[m.user])
    d.audit_moderator("member.role", member.user, None, role=body.role, previous=old)
    return None


def _until(d: Decision, duration_s: int | None) -> int:
    """When a sanction of `duration_s` ends (FOREVER without one)."""
    return FOREVER if duration_s is None else d.now + duration_s * 1000


def _mute(d: Decision, body: F.MemberMute) -> Result:
    state = d.conv()
    _on_present_member(d, state, body.user, Action.MUTE)
    until = _until(d, body.duration_s)
    put_mute(state, body.user, until, d.cmd.user, body.reason, d.now, d.batch)
    d.audit_moderator("member.mute", body.user, body.reason, until=shown_until(until))
    return E.SanctionResult(rid=d.rid, until=shown_until(until))


def _unmute(d: Decision, body: F.MemberUnmute) -> Result:
    return _lift(d, body.user, Action.MUTE, "mute", E.MemberUnmuted)


def _lift(d: Decision, user: str, action: Action, kind: str,
          event: type[E.MemberUnmuted] | type[E.MemberUnbanned]) -> Result:
    """Unmute or unban: gone from state and store, announced (to the user too) and audited."""
    state = d.conv()
    _on_member(d, state, user, action)
    sanctions = state.mutes if kind == "mute" else state.bans
    if sanctions.pop(user, None) is None:
        return None
    conv = state.row.id
    d.batch.mutations.append(DropSanction(conv, user, kind))
    d.batch.emit(conv, event(conv=conv, user=user, by=d.cmd.user), also=[user])
    d.audit_moderator(f"member.un{kind}", user, None)
    return None


def _kick(d: Decision, body: F.MemberKick) -> Result:
    state = d.conv()
    _on_present_member(d, state, body.user, Action.KICK)
    take_out_of_call(d, state, body.user)
    remove_member(state, body.user, d.batch, by=d.cmd.user, reason=body.reason)
    d.audit_moderator("member.kick", body.user, body.reason)
    return None


def _ban_needs(core: ChatCore, cmd: Command, body: F.MemberBan, needs: Needs) -> None:
    needs.users.add(body.user)


def _ban(d: Decision, body: F.MemberBan) -> Result:
    cmd, batch = d.cmd, d.batch
    state = d.conv()
    row = state.row
    member = _on_member(d, state, body.user, Action.BAN)
    if member is None and body.user not in d.facts.users:
        raise NotFound(f"no such user: {body.user}")
    until = _until(d, body.duration_s)
    sanction = SanctionRow(conv=row.id, user=body.user, kind="ban", until=until, by=cmd.user, at=d.now,
                           reason=body.reason)
    state.bans[body.user] = sanction
    batch.mutations.append(PutSanction(sanction))
    if member is not None:
        take_out_of_call(d, state, body.user)
        remove_member(state, body.user, batch, by=cmd.user)
    batch.emit(row.id, E.MemberBanned(conv=row.id, user=body.user, by=cmd.user, until=shown_until(until),
                                      reason=body.reason), also=[body.user])
    d.audit_moderator("member.ban", body.user, body.reason, until=shown_until(until))
    return E.SanctionResult(rid=d.rid, until=shown_until(until))


def _unban(d: Decision, body: F.MemberUnban) -> Result:
    return _lift(d, body.user, Action.BAN, "ban", E.MemberUnbanned)


ROLE = Operation(F.MemberRole, _role)
MUTE = Operation(F.MemberMute, _mute)
UNMUTE = Operation(F.MemberUnmute, _unmute)
KICK = Operation(F.MemberKick, _kick)
BAN = Operation(F.MemberBan, _ban, _ban_needs)
UNBAN = Operation(F.MemberUnban, _unban)
