"""Conversations and who is in them: conv.create, conv.join, conv.leave and conv.invite."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chat_core.decide import Batch, Decision, Operation, Result, RoomPassword, remove_member, request_key
from chat_core.ops.calls import take_out_of_call
from moderation import policy
from moderation.policy import Action, Subject
from parley import events as E
from parley import frames as F
from parley.errors import BadRequest, Conflict, Forbidden, NotFound
from parley.ids import direct_conv_id
from parley.records import Command, ConvRow, ConvState, CreateConv, MemberRow, Needs, PutMember

if TYPE_CHECKING:
    from chat_core.core import ChatCore


def _check_invitee(d: Decision, s: Subject, user: str) -> None:
    denial = policy.decide(s, Action.INVITE, d.core.instance)
    if denial is not None:
        raise Forbidden(f"{user}: {denial.reason}", rule=denial.rule)


def _add_members(state: ConvState, joining: list[tuple[str, str]], by: str | None, now: int, batch: Batch) -> None:
    """Add (user, role)s, then announce them: all are members before any view is built."""
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


def _create_needs(core: ChatCore, cmd: Command, body: F.ConvCreate, needs: Needs) -> None:
    needs.users.update(body.members)
    needs.blocks.update((cmd.user, u) for u in body.members)


def _create_password(core: ChatCore, cmd: Command, body: F.ConvCreate) -> RoomPassword | None:
    return None if body.password is None else RoomPassword(body.password, None)


def _create(d: Decision, body: F.ConvCreate) -> Result:
    cmd, facts, now, batch = d.cmd, d.facts, d.now, d.batch
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
    row = ConvRow(
        id=cmd.conv, kind=body.kind, title=None if body.kind == "direct" else body.title,
        visibility=body.visibility, password_hash=facts.password_hashes.get(request_key(cmd)),
        history=body.history,
        owner=cmd.user, created_at=now,
    )
    if body.kind == "direct":
        row.history = "full"  # both parties see the whole 1:1 conversation
    state = ConvState(row, {})
    if body.kind == "direct":
        state.blocks = {p for p in facts.blocks if set(p) == {cmd.user, members[0]}}
    d.core.convs[cmd.conv] = state
    batch.mutations.append(CreateConv(row))
    _add_members(state, [(cmd.user, "owner"), *((u, "member") for u in members)], None, now, batch)
    return E.ConvResult(rid=d.rid, conv=state.view(cmd.user))


def _join_password(core: ChatCore, cmd: Command, body: F.ConvJoin) -> RoomPassword | None:
    state = core.convs.get(cmd.conv)
    if body.password is None or state is None or state.row.password_hash is None:
        return None
    return RoomPassword(body.password, state.row.password_hash)


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
        if row.password_hash is not None and request_key(cmd) not in d.facts.passwords_ok:
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
    joining = [(u, "member") for u in dict.fromkeys(body.users) if u not in state.members]
    for user, _ in joining:
        ban = state.bans.get(user)
        s.target_banned_until = ban.until if ban else 0
        s.blocked = (user, cmd.user) in d.facts.blocks
        _check_invitee(d, s, user)
    _add_members(state, joining, cmd.user, d.now, d.batch)
    return None


CREATE = Operation(F.ConvCreate, _create, _create_needs, password=_create_password)
JOIN = Operation(F.ConvJoin, _join, password=_join_password)
LEAVE = Operation(F.ConvLeave, _leave)
INVITE = Operation(F.ConvInvite, _invite, _invite_needs)
