"""Conversations and who is in them: conv.create, conv.join, conv.leave and conv.invite, and the
invitations of those whose choice ("who may add me") does not let the creator or inviter add them
directly: invite.accept and invite.decline."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chat_core.decide import SYSTEM, Batch, Decision, Operation, Result, needs_age_for_links, remove_member
from chat_core.ops.calls import take_out_of_call
from moderation import policy
from moderation.policy import Action, Subject
from parley import events as E
from parley import frames as F
from parley.errors import BadRequest, Conflict, Forbidden, NotFound
from parley.ids import direct_conv_id
from parley.records import (
    WHO_MAY_ADD_DEFAULT, Command, ConvRow, ConvState, CreateConv, DropInvitation, InvitationRow, MemberRow, Needs,
    PutInvitation, PutMember,
)

if TYPE_CHECKING:
    from chat_core.core import ChatCore


def _check_invitee(d: Decision, s: Subject, user: str) -> None:
    denial = policy.decide(s, Action.INVITE, d.core.instance)
    if denial is not None:
        raise Forbidden(f"{user}: {denial.reason}", rule=denial.rule)


def _add_members(state: ConvState, joining: list[tuple[str, str]], by: str | None, now: int, batch: Batch) -> None:
    """Add (user, role)s, then announce them: all are members before any view is built. Joining,
    whichever way, settles the user's pending invitation."""
    row = state.row
    visible_from = 1 if row.history == "full" else row.last_seq + 1
    for user, role in joining:
        member = MemberRow(conv=row.id, user=user, role=role, visible_from=visible_from,
                           read_seq=row.last_seq, joined_at=now)
        state.members[user] = member
        batch.mutations.append(PutMember(member))
    for user, role in joining:
        batch.emit(row.id, E.MemberJoined(conv=row.id, user=user, role=role, by=by), members_changed=True)
        # The new member's own sessions learn of the conversation from its object.
        batch.emit(row.id, E.ConvUpdated(conv=state.view(user)), to=[user])
        if state.invitations.pop(user, None) is not None:
            batch.mutations.append(DropInvitation(row.id, user))
            batch.emit(row.id, E.InviteRemoved(conv=row.id, accepted=True), to=[user])


def _by_choice(cmd: Command, users: list[str]) -> tuple[list[str], list[str]]:
    """`users` split into those the actor may add directly and those to invite instead, by each
    one's choice as the gateway read it (EdgeFacts; without it, everyone chose the default)."""
    choices = cmd.edge.who_may_add if cmd.edge else {}
    contacts = set(cmd.edge.contacts) if cmd.edge else set()
    added: list[str] = []
    invited: list[str] = []
    for user in users:
        directly = policy.adds_directly(choices.get(user, WHO_MAY_ADD_DEFAULT), user in contacts)
        (added if directly else invited).append(user)
    return added, invited


def _invite_users(state: ConvState, users: list[str], by: str, now: int, batch: Batch) -> None:
    """A pending invitation for each of `users` not invited yet, told to them alone."""
    row = state.row
    for user in users:
        if user in state.invitations:
            continue
        invitation = InvitationRow(conv=row.id, user=user, by=by, at=now)
        state.invitations[user] = invitation
        batch.mutations.append(PutInvitation(invitation))
        batch.emit(row.id, E.InviteNew(conv=row.id, kind=row.kind, title=row.title, by=by, at=now), to=[user])


def _create_needs(core: ChatCore, cmd: Command, body: F.ConvCreate, needs: Needs) -> None:
    needs.users.update(body.members)
    needs.blocks.update((cmd.user, u) for u in body.members)
    needs_age_for_links(core, cmd, body.title, needs)


def _create(d: Decision, body: F.ConvCreate) -> Result:
    cmd, facts, now, batch = d.cmd, d.facts, d.now, d.batch
    if body.password is not None:  # hashed at the gateway: a plaintext here was not (an older gateway)
        raise BadRequest("the password could not be set; retry")
    members = [u for u in dict.fromkeys(body.members) if u != cmd.user]
    unknown = [u for u in members if u not in facts.users]
    if unknown:
        raise NotFound(f"no such user: {unknown[0]}")
    if body.kind == "direct":
        if not members:
            raise BadRequest("a direct conversation needs another user")
        if cmd.conv != direct_conv_id(cmd.user, members[0]):
            raise BadRequest("direct conversation id does not match its members")
        # Opening (or reopening) a direct chat is writing to the peer.
        peer = members[0]
        s = Subject(kind="direct", visibility="private", role="member", now=now,
                    blocked=(peer, cmd.user) in facts.blocks, blocking=(cmd.user, peer) in facts.blocks)
        d.check(s, Action.SEND)
    else:
        for user in members:  # adding someone to a new group is inviting them
            s = Subject(kind=body.kind, visibility=body.visibility, role="owner", now=now,
                        blocked=(user, cmd.user) in facts.blocks)
            _check_invitee(d, s, user)
    existing = d.core.convs.get(cmd.conv)
    if existing is not None:
        if body.kind == "direct":
            missing = [(u, "member") for u in (cmd.user, members[0]) if u not in existing.members]
            _add_members(existing, missing, None, now, batch)
            existing.blocks = {p for p in facts.blocks if set(p) == {cmd.user, members[0]}}
            return E.ConvResult(rid=d.rid, conv=existing.view(cmd.user))
        if existing.row.owner == cmd.user and cmd.user in existing.members:
            return E.ConvResult(rid=d.rid, conv=existing.view(cmd.user))  # a replayed create
        raise Conflict("conversation id already in use")
    if body.kind != "direct" and body.title:  # a title is text every member (and invitee) reads
        flag = d.check_text(Subject(kind=body.kind, visibility=body.visibility, role="owner", now=now),
                            Action.SET_INFO, body.title, "conv")
        if flag is not None:
            d.audit(SYSTEM, "conv.flag", cmd.conv, flag, sender=cmd.user)
    row = ConvRow(
        id=cmd.conv, kind=body.kind, title=None if body.kind == "direct" else body.title,
        visibility=body.visibility, password_hash=cmd.edge.password_hash if cmd.edge else None,
        history=body.history,
        owner=cmd.user, created_at=now,
    )
    if body.kind == "direct":
        row.history = "full"  # both parties see the whole 1:1 conversation
    state = ConvState(row, {})
    invited: list[str] = []
    added = members
    if body.kind == "direct":
        state.blocks = {p for p in facts.blocks if set(p) == {cmd.user, members[0]}}
    else:  # a direct chat is writing to someone, not adding them anywhere
        added, invited = _by_choice(cmd, members)
    d.core.convs[cmd.conv] = state
    batch.mutations.append(CreateConv(row))
    _add_members(state, [(cmd.user, "owner"), *((u, "member") for u in added)], None, now, batch)
    _invite_users(state, invited, cmd.user, now, batch)
    return E.ConvResult(rid=d.rid, conv=state.view(cmd.user), invited=invited)


def _join(d: Decision, body: F.ConvJoin) -> Result:
    cmd = d.cmd
    state = d.conv()
    row = state.row
    member = state.members.get(cmd.user)
    if member is None:
        if row.visibility != "public":
            raise NotFound("no such conversation")
        ban = state.bans.get(cmd.user)
        s = d.subject(state)
        s.banned_until = ban.until if ban else 0
        d.check(s, Action.JOIN)
        # The gateway checked the password against the hash it read: a password changed since
        # refuses the join as a wrong one would.
        if row.password_hash is not None and (cmd.edge is None or cmd.edge.password_hash != row.password_hash):
            raise Forbidden("wrong password for this conversation", rule="password")
        _add_members(state, [(cmd.user, "member")], None, d.now, d.batch)
    return E.ConvResult(rid=d.rid, conv=state.view(cmd.user))


def _leave(d: Decision, body: F.ConvLeave) -> Result:
    state = d.conv()
    policy.member_or_hide(state.row, state.members.get(d.cmd.user))
    take_out_of_call(d, state, d.cmd.user)
    remove_member(state, d.cmd.user, d.batch)
    return None


def _invite_needs(core: ChatCore, cmd: Command, body: F.ConvInvite, needs: Needs) -> None:
    needs.users.update(body.users)
    needs.blocks.update((cmd.user, u) for u in body.users)


def _invite(d: Decision, body: F.ConvInvite) -> Result:
    cmd = d.cmd
    state = d.conv()
    s = d.subject(state)
    d.check(s, Action.INVITE)
    unknown = [u for u in body.users if u not in d.facts.users]
    if unknown:
        raise NotFound(f"no such user: {unknown[0]}")
    joining = [u for u in dict.fromkeys(body.users) if u not in state.members]
    for user in joining:
        ban = state.bans.get(user)
        s.target_banned_until = ban.until if ban else 0
        s.blocked = (user, cmd.user) in d.facts.blocks
        _check_invitee(d, s, user)
    added, invited = _by_choice(cmd, joining)
    _add_members(state, [(u, "member") for u in added], cmd.user, d.now, d.batch)
    _invite_users(state, invited, cmd.user, d.now, d.batch)
    return E.InviteResult(rid=d.rid, added=added, invited=invited)


def _invitation(state: ConvState, user: str) -> InvitationRow:
    """`user`'s pending invitation to this conversation."""
    invitation = state.invitations.get(user)
    if invitation is None:
        if state.row.visibility == "public" or user in state.members:
            raise NotFound("you have no invitation to this conversation")
        raise NotFound("no such conversation")  # as for one that does not exist
    return invitation


def _accept(d: Decision, body: F.InviteAccept) -> Result:
    cmd = d.cmd
    state = d.conv()
    if cmd.user not in state.members:  # a member already: accepting again is harmless
        invitation = _invitation(state, cmd.user)
        ban = state.bans.get(cmd.user)
        s = d.subject(state)
        s.banned_until = ban.until if ban else 0
        s.allow_guests = True  # the invitation admits its invitee, guest or not; only a ban keeps them out
        d.check(s, Action.JOIN)
        _add_members(state, [(cmd.user, "member")], invitation.by, d.now, d.batch)
    return E.ConvResult(rid=d.rid, conv=state.view(cmd.user))


def _decline(d: Decision, body: F.InviteDecline) -> Result:
    cmd = d.cmd
    state = d.conv()
    _invitation(state, cmd.user)
    del state.invitations[cmd.user]
    d.batch.mutations.append(DropInvitation(state.row.id, cmd.user))
    d.batch.emit(state.row.id, E.InviteRemoved(conv=state.row.id, accepted=False), to=[cmd.user])
    return None


CREATE = Operation(F.ConvCreate, _create, _create_needs)
JOIN = Operation(F.ConvJoin, _join)
LEAVE = Operation(F.ConvLeave, _leave)
INVITE = Operation(F.ConvInvite, _invite, _invite_needs)
ACCEPT = Operation(F.InviteAccept, _accept)
DECLINE = Operation(F.InviteDecline, _decline)
