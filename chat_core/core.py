"""The decisions of the single writer: validate -> authorize -> sequence, as pure code.

`ChatCore` holds the state of the conversations it owns (rows, members, heads) and turns each
command into a reply frame plus mutations and events collected in a `Batch`. It does no I/O:
the worker prefetches what a batch needs (`needs` -> store -> `absorb`) and writes the batch.
Every check runs before any state changes, so a rejected command leaves no trace.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from moderation import policy
from moderation.policy import Action
from parley import frames as F
from parley.errors import BadRequest, Conflict, Forbidden, NotFound, ParleyError
from parley.frames import Message, ok_frame, error_frame, event_frame
from parley.ids import direct_conv_id, partition_of
from parley.records import (
    Command, ConvRow, ConvState, CreateConv, DropMember, EventRecord, Facts, IdemKey, InsertMessage,
    MemberRow, Mutation, Needs, PutMember, PutOutbox, SetConvHead, SetConvOwner, SetReaction,
    SetReadSeq, UpdateMessage,
)


def request_key(cmd: Command) -> tuple[str, str]:
    """Identifies one in-flight request: a session's rid."""
    return (cmd.session, cmd.body.rid)


@dataclass(slots=True)
class Batch:
    """What one batch of commands writes: mutations, then coalesced heads and cursors, then events."""

    mutations: list[Mutation] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)
    heads: set[str] = field(default_factory=set)
    cursors: set[tuple[str, str]] = field(default_factory=set)
    assigned: list[IdemKey] = field(default_factory=list)
    #: The outbox rows of `finish`, in event order.
    outbox: list[PutOutbox] = field(default_factory=list)

    def emit(self, conv: str, frame: bytes, *, to: list[str] | None = None,
             also: list[str] | None = None, members_changed: bool = False) -> None:
        self.events.append(EventRecord(conv, frame, to, also, members_changed))

    def finish(self, convs: dict[str, ConvState], partitions: int = 1) -> list[Mutation]:
        """All mutations in write order; outbox rows last, in event order, each in the shard of
        its conversation's log partition."""
        out = list(self.mutations)
        out.extend(SetConvHead(c, convs[c].row.last_seq) for c in sorted(self.heads))
        for conv, user in sorted(self.cursors):
            member = convs[conv].members.get(user)
            if member is not None:
                out.append(SetReadSeq(conv, user, member.read_seq))
        self.outbox = [PutOutbox(e, partition_of(e.conv, partitions)) for e in self.events]
        out.extend(self.outbox)
        return out


class ChatCore:
    """The state and rules of the conversations this writer owns."""

    def __init__(self, max_convs: int = 50_000, max_idem: int = 200_000) -> None:
        self.convs: OrderedDict[str, ConvState] = OrderedDict()
        self._idem: OrderedDict[IdemKey, tuple[int, int]] = OrderedDict()
        #: Keys assigned by the batch being decided; remembered in `_idem` once it is durable.
        self._pending_idem: dict[IdemKey, tuple[int, int]] = {}
        self._max_convs = max_convs
        self._max_idem = max_idem

    # ---- the batch cycle ----------------------------------------------------------------

    def needs(self, cmds: list[Command]) -> Needs:
        """What the store must read before `handle` can decide these commands."""
        needs = Needs()
        for cmd in cmds:
            body = cmd.body
            if cmd.conv not in self.convs:
                needs.convs.add(cmd.conv)
            if isinstance(body, F.Send):
                key = (cmd.conv, cmd.user, body.cmid)
                if key not in self._idem:
                    needs.idem.add(key)
                needs.attachments.update(body.attachments)
            elif isinstance(body, (F.Edit, F.Delete, F.React)):
                needs.messages.add((cmd.conv, body.seq))
            elif isinstance(body, F.ConvCreate):
                needs.users.update(body.members)
            elif isinstance(body, F.ConvInvite):
                needs.users.update(body.users)
        return needs

    def absorb(self, facts: Facts) -> None:
        for conv_id, state in facts.convs.items():
            self.convs[conv_id] = state

    def forget(self) -> None:
        """Drop all cached state (after a failed write: the store is the truth)."""
        self.convs.clear()
        self._idem.clear()
        self._pending_idem.clear()

    def committed(self, batch: Batch) -> None:
        """The batch is durable: remember its idempotency keys and bound the caches."""
        for key in batch.assigned:
            self._idem[key] = self._pending_idem.pop(key)
        while len(self._idem) > self._max_idem:
            self._idem.popitem(last=False)
        while len(self.convs) > self._max_convs:
            self.convs.popitem(last=False)

    def begin(self) -> Batch:
        self._pending_idem.clear()
        return Batch()

    def handle(self, cmd: Command, facts: Facts, now_ms: int, batch: Batch) -> bytes:
        """Decide one command: the reply frame; effects go into `batch`."""
        body = cmd.body
        try:
            result = self._dispatch(cmd, facts, now_ms, batch)
        except ParleyError as err:
            return error_frame(err, body.rid)
        return ok_frame(body.rid, **result)

    def _dispatch(self, cmd: Command, facts: Facts, now: int, batch: Batch) -> dict[str, object]:
        body = cmd.body
        if isinstance(body, F.Send):
            return self._send(cmd, body, facts, now, batch)
        if isinstance(body, F.ConvCreate):
            return self._create(cmd, body, facts, now, batch)
        state = self._existing(cmd.conv)
        if isinstance(body, F.Read):
            return self._read(cmd, state, body, batch)
        if isinstance(body, F.React):
            return self._react(cmd, state, body, facts, batch)
        if isinstance(body, F.Edit):
            return self._edit(cmd, state, body, facts, now, batch)
        if isinstance(body, F.Delete):
            return self._delete(cmd, state, body, facts, batch)
        if isinstance(body, F.ConvJoin):
            return self._join(cmd, state, request_key(cmd) in facts.passwords_ok, now, batch)
        if isinstance(body, F.ConvLeave):
            return self._leave(cmd, state, batch)
        if isinstance(body, F.ConvInvite):
            return self._invite(cmd, state, body, facts, now, batch)
        raise BadRequest(f"{type(body).__name__} is not a write")

    def _existing(self, conv: str) -> ConvState:
        state = self.convs.get(conv)
        if state is None:
            raise NotFound("no such conversation")
        self.convs.move_to_end(conv)
        return state

    # ---- messages -------------------------------------------------------------------------

    def _send(self, cmd: Command, body: F.Send, facts: Facts, now: int, batch: Batch) -> dict[str, object]:
        key = (cmd.conv, cmd.user, body.cmid)
        earlier = self._idem.get(key) or self._pending_idem.get(key) or facts.idem.get(key)
        state = self._existing(cmd.conv)
        if earlier is not None:  # stored before: the original answer, whatever changed since
            seq, ts = earlier
            return {"conv": cmd.conv, "seq": seq, "ts": ts}
        member = policy.authorize(state.row, state.members.get(cmd.user), Action.SEND)
        row = state.row
        if body.reply_to is not None and not member.visible_from <= body.reply_to <= row.last_seq:
            raise BadRequest("reply_to names no message you can see")
        attachments = list(dict.fromkeys(body.attachments))
        for attachment in attachments:
            _check_attachment(cmd, attachment, facts)
        row.last_seq += 1
        seq = row.last_seq
        msg = Message(
            conv=cmd.conv, seq=seq, sender=cmd.user, ts=now, cmid=body.cmid, text=body.text,
            reply_to=body.reply_to, attachments=attachments,
            mentions=list(dict.fromkeys(body.mentions)),
        )
        member.read_seq = seq
        self._pending_idem[key] = (seq, now)
        batch.assigned.append(key)
        batch.heads.add(cmd.conv)
        batch.cursors.add((cmd.conv, cmd.user))
        batch.mutations.append(InsertMessage(msg))
        batch.emit(cmd.conv, event_frame("message.new", message=msg))
        return {"conv": cmd.conv, "seq": seq, "ts": now}

    def _visible_message(self, state: ConvState, member: MemberRow, seq: int, facts: Facts) -> Message:
        msg = facts.messages.get((state.row.id, seq))
        if msg is None or seq < member.visible_from:
            raise NotFound("no such message")
        return msg

    def _edit(self, cmd: Command, state: ConvState, body: F.Edit, facts: Facts, now: int,
              batch: Batch) -> dict[str, object]:
        member = policy.member_or_hide(state.row, state.members.get(cmd.user))
        msg = self._visible_message(state, member, body.seq, facts)
        if msg.sender != cmd.user:
            raise Forbidden("only the sender may edit a message")
        if msg.deleted:
            raise Conflict("the message was deleted")
        msg.text, msg.edited_at = body.text, now
        batch.mutations.append(UpdateMessage(msg.conv, msg.seq, msg.text, now, False))
        batch.emit(cmd.conv, event_frame("message.edited", message=msg))
        return {"conv": cmd.conv, "seq": body.seq}

    def _delete(self, cmd: Command, state: ConvState, body: F.Delete, facts: Facts,
                batch: Batch) -> dict[str, object]:
        member = policy.member_or_hide(state.row, state.members.get(cmd.user))
        msg = self._visible_message(state, member, body.seq, facts)
        if msg.sender != cmd.user and not policy.may(state.row, member, Action.DELETE_ANY):
            raise Forbidden("only the sender, or an owner, admin or moderator, may delete a message")
        if not msg.deleted:
            msg.text, msg.attachments, msg.deleted = None, [], True
            batch.mutations.append(UpdateMessage(msg.conv, msg.seq, None, msg.edited_at, True))
            batch.emit(cmd.conv, event_frame("message.deleted", message=msg))
        return {"conv": cmd.conv, "seq": body.seq}

    def _react(self, cmd: Command, state: ConvState, body: F.React, facts: Facts,
               batch: Batch) -> dict[str, object]:
        member = policy.authorize(state.row, state.members.get(cmd.user), Action.READ)
        msg = self._visible_message(state, member, body.seq, facts)
        if msg.deleted:
            raise Conflict("the message was deleted")
        users = msg.reactions.setdefault(body.emoji, [])
        if body.on == (cmd.user in users):
            return {}
        if body.on:
            users.append(cmd.user)
        else:
            users.remove(cmd.user)
            if not users:
                del msg.reactions[body.emoji]
        batch.mutations.append(SetReaction(cmd.conv, body.seq, body.emoji, cmd.user, body.on))
        batch.emit(cmd.conv, event_frame("reaction", conv=cmd.conv, seq=body.seq, emoji=body.emoji,
                                         user=cmd.user, on=body.on))
        return {}

    def _read(self, cmd: Command, state: ConvState, body: F.Read, batch: Batch) -> dict[str, object]:
        member = policy.authorize(state.row, state.members.get(cmd.user), Action.READ)
        if body.seq > state.row.last_seq:
            raise BadRequest(f"seq {body.seq} is beyond the last message ({state.row.last_seq})")
        if body.seq <= member.read_seq:
            return {}
        member.read_seq = body.seq
        batch.cursors.add((cmd.conv, cmd.user))
        # Channels keep who-read-what private: only the reader's own devices hear it.
        to = [cmd.user] if state.row.kind == "channel" else None
        batch.emit(cmd.conv, event_frame("read", conv=cmd.conv, user=cmd.user, seq=body.seq), to=to)
        return {}

    # ---- conversations and membership -----------------------------------------------------

    def _create(self, cmd: Command, body: F.ConvCreate, facts: Facts, now: int,
                batch: Batch) -> dict[str, object]:
        members = [u for u in dict.fromkeys(body.members) if u != cmd.user]
        unknown = [u for u in members if u not in facts.users]
        if unknown:
            raise NotFound(f"no such user: {unknown[0]}")
        if body.kind == "direct":
            if not members:
                raise BadRequest("a direct conversation needs another user")
            if cmd.conv != direct_conv_id(cmd.user, members[0]):
                raise BadRequest("direct conversation id does not match its members")
        existing = self.convs.get(cmd.conv)
        if existing is not None:
            if body.kind == "direct":
                missing = [(u, "member") for u in (cmd.user, members[0]) if u not in existing.members]
                self._add_members(existing, missing, None, now, batch)
                return {"conv": existing.view(cmd.user)}
            if existing.row.owner == cmd.user and cmd.user in existing.members:
                return {"conv": existing.view(cmd.user)}  # a replayed create
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
        self.convs[cmd.conv] = state
        batch.mutations.append(CreateConv(row))
        self._add_members(state, [(cmd.user, "owner"), *((u, "member") for u in members)], None, now, batch)
        return {"conv": state.view(cmd.user)}

    def _add_members(self, state: ConvState, joining: list[tuple[str, str]], by: str | None, now: int,
                     batch: Batch) -> None:
        """Add (user, role)s, then announce them: all are members before any view is built."""
        row = state.row
        visible_from = 1 if row.history == "full" else row.last_seq + 1
        for user, role in joining:
            member = MemberRow(conv=row.id, user=user, role=role, visible_from=visible_from,
                               read_seq=row.last_seq, joined_at=now)
            state.members[user] = member
            batch.mutations.append(PutMember(member))
        for user, role in joining:
            fields: dict[str, object] = {"conv": row.id, "user": user, "role": role}
            if by is not None:
                fields["by"] = by
            batch.emit(row.id, event_frame("member.joined", **fields), members_changed=True)
            # The new member's own sessions learn of the conversation from its object.
            batch.emit(row.id, event_frame("conv.updated", conv=state.view(user)), to=[user])

    def _join(self, cmd: Command, state: ConvState, password_ok: bool, now: int,
              batch: Batch) -> dict[str, object]:
        row = state.row
        member = state.members.get(cmd.user)
        if member is None:
            if row.visibility != "public":
                raise NotFound("no such conversation")
            if row.password_hash is not None and not password_ok:
                raise Forbidden("wrong password for this conversation")
            self._add_members(state, [(cmd.user, "member")], None, now, batch)
        return {"conv": state.view(cmd.user)}

    def _leave(self, cmd: Command, state: ConvState, batch: Batch) -> dict[str, object]:
        policy.member_or_hide(state.row, state.members.get(cmd.user))
        row = state.row
        del state.members[cmd.user]
        batch.mutations.append(DropMember(row.id, cmd.user))
        batch.emit(row.id, event_frame("member.left", conv=row.id, user=cmd.user), also=[cmd.user],
                   members_changed=True)
        if row.owner == cmd.user and state.members and row.kind != "direct":
            self._pass_ownership(state, batch)
        return {}

    def _pass_ownership(self, state: ConvState, batch: Batch) -> None:
        """An owner who leaves hands the conversation to the highest-ranked, longest-standing member."""
        heir = max(state.members.values(),
                   key=lambda m: (policy.ROLE_RANK[m.role], -m.joined_at, m.user))
        heir.role = "owner"
        state.row.owner = heir.user
        batch.mutations.append(PutMember(heir))
        batch.mutations.append(SetConvOwner(state.row.id, heir.user))
        batch.emit(state.row.id, event_frame("member.updated", conv=state.row.id, user=heir.user,
                                             role="owner"))

    def _invite(self, cmd: Command, state: ConvState, body: F.ConvInvite, facts: Facts, now: int,
                batch: Batch) -> dict[str, object]:
        policy.authorize(state.row, state.members.get(cmd.user), Action.INVITE)
        unknown = [u for u in body.users if u not in facts.users]
        if unknown:
            raise NotFound(f"no such user: {unknown[0]}")
        joining = [(u, "member") for u in dict.fromkeys(body.users) if u not in state.members]
        self._add_members(state, joining, cmd.user, now, batch)
        return {}


def _check_attachment(cmd: Command, attachment: str, facts: Facts) -> None:
    """A message carries only what its sender uploaded to its conversation, once uploaded."""
    row = facts.attachments.get(attachment)
    if row is None or row.conv != cmd.conv or row.uploader != cmd.user:
        raise NotFound(f"no such attachment: {attachment}")
    if not row.uploaded:
        raise Conflict(f"attachment {attachment} is not uploaded yet: complete the upload first")
