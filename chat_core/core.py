"""The decisions of the single writer: validate -> authorize -> sequence, as pure code.

`ChatCore` holds the state of the conversations it owns (rows, members, heads, mutes, bans,
blocks) and turns each command into a reply frame plus mutations and events collected in a
`Batch`. It does no I/O: the worker prefetches what a batch needs (`needs` -> store -> `absorb`)
and writes the batch. Every permission is decided by moderation's policy core from facts held
here. Every check runs before any state changes, so a rejected command leaves no trace; the one
exception is deliberate: a flood is refused *and* mutes its sender (an audited automatic action).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field

from moderation import policy
from moderation.filters import AllowAll, ContentFilter
from moderation.policy import DEFAULT_INSTANCE, FOREVER, Action, InstancePolicy, Subject
from parley import frames as F
from parley.errors import BadRequest, Conflict, Forbidden, NotFound, ParleyError
from parley.frames import UNSET, Message, ok_frame, error_frame, event_frame
from parley.ids import direct_conv_id, partition_of
from parley.limits import MAX_PINS
from parley.records import (
    AuditEntry, Command, ConvRow, ConvState, CreateConv, DropBlock, DropMember, DropSanction, EventRecord, Facts,
    Flood, IdemKey, InsertMessage, MemberRow, Mutation, Needs, PutAudit, PutBlock, PutMember, PutOutbox,
    PutSanction, SanctionRow, SetConvHead, SetConvOwner, SetReaction, SetReadSeq, UpdateConv, UpdateMessage,
)

#: The actor of automatic actions in the audit log and in events.
SYSTEM = "system"


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
    #: Stage timestamps of the command being decided, given to its events (parley.hops).
    t_ns: list[int] = field(default_factory=list)

    def emit(self, conv: str, frame: bytes, *, to: list[str] | None = None,
             also: list[str] | None = None, members_changed: bool = False) -> None:
        self.events.append(EventRecord(conv, frame, to, also, members_changed, self.t_ns))

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

    def __init__(self, max_convs: int = 50_000, max_idem: int = 200_000, *,
                 instance: InstancePolicy = DEFAULT_INSTANCE, content_filter: ContentFilter | None = None,
                 enforce: bool = True) -> None:
        self.convs: OrderedDict[str, ConvState] = OrderedDict()
        self._idem: OrderedDict[IdemKey, tuple[int, int]] = OrderedDict()
        #: Keys assigned by the batch being decided; remembered in `_idem` once it is durable.
        self._pending_idem: dict[IdemKey, tuple[int, int]] = {}
        #: users.created_at never changes: cached for the account-age rules.
        self._created_at: OrderedDict[str, int] = OrderedDict()
        self._max_convs = max_convs
        self._max_idem = max_idem
        self.instance = instance
        #: None for AllowAll: the send path skips the call altogether.
        self._filter: ContentFilter | None = None if content_filter is None or isinstance(content_filter, AllowAll) \
            else content_filter
        #: False only to measure the policy's cost (loadtests.policy_bench): sends skip every rule.
        self._enforce = enforce

    # ---- the batch cycle ----------------------------------------------------------------

    def needs(self, cmds: list[Command]) -> Needs:
        """What the store must read before `handle` can decide these commands."""
        needs = Needs()
        for cmd in cmds:
            body = cmd.body
            if cmd.conv not in self.convs and not isinstance(body, (F.UserBlock, F.UserUnblock)):
                needs.convs.add(cmd.conv)
            if isinstance(body, F.Send):
                key = (cmd.conv, cmd.user, body.cmid)
                if key not in self._idem:
                    needs.idem.add(key)
                needs.attachments.update(body.attachments)
                if (body.mentions or policy.count_links(body.text)) and cmd.user not in self._created_at:
                    needs.accounts.add(cmd.user)
            elif isinstance(body, (F.Edit, F.Delete, F.React, F.Pin)):
                needs.messages.add((cmd.conv, body.seq))
                if isinstance(body, F.Edit) and policy.count_links(body.text) and cmd.user not in self._created_at:
                    needs.accounts.add(cmd.user)
            elif isinstance(body, F.ConvCreate):
                needs.users.update(body.members)
                needs.blocks.update((cmd.user, u) for u in body.members)
            elif isinstance(body, F.ConvInvite):
                needs.users.update(body.users)
                needs.blocks.update((cmd.user, u) for u in body.users)
            elif isinstance(body, F.MemberBan):
                needs.users.add(body.user)
            elif isinstance(body, (F.UserBlock, F.UserUnblock)):
                needs.users.add(body.user)
                needs.blocks.add((cmd.user, body.user))
        return needs

    def absorb(self, facts: Facts) -> None:
        for conv_id, state in facts.convs.items():
            self.convs[conv_id] = state
        self._created_at.update(facts.created_at)
        while len(self._created_at) > self._max_idem:
            self._created_at.popitem(last=False)

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
        if isinstance(body, (F.UserBlock, F.UserUnblock)):
            return self._block(cmd, body, facts, now, batch)
        state = self._existing(cmd.conv)
        if isinstance(body, F.Read):
            return self._read(cmd, state, body, batch)
        if isinstance(body, F.React):
            return self._react(cmd, state, body, facts, batch)
        if isinstance(body, F.Edit):
            return self._edit(cmd, state, body, facts, now, batch)
        if isinstance(body, F.Delete):
            return self._delete(cmd, state, body, facts, now, batch)
        if isinstance(body, F.ConvJoin):
            return self._join(cmd, state, request_key(cmd) in facts.passwords_ok, now, batch)
        if isinstance(body, F.ConvLeave):
            return self._leave(cmd, state, batch)
        if isinstance(body, F.ConvInvite):
            return self._invite(cmd, state, body, facts, now, batch)
        if isinstance(body, F.ConvUpdate):
            return self._update(cmd, state, body, facts, now, batch)
        if isinstance(body, F.MemberRole):
            return self._role(cmd, state, body, now, batch)
        if isinstance(body, (F.MemberMute, F.MemberUnmute)):
            return self._mute(cmd, state, body, now, batch)
        if isinstance(body, F.MemberKick):
            return self._kick(cmd, state, body, now, batch)
        if isinstance(body, (F.MemberBan, F.MemberUnban)):
            return self._ban(cmd, state, body, facts, now, batch)
        if isinstance(body, F.Pin):
            return self._pin(cmd, state, body, facts, now, batch)
        raise BadRequest(f"{type(body).__name__} is not a write")

    def _existing(self, conv: str) -> ConvState:
        state = self.convs.get(conv)
        if state is None:
            raise NotFound("no such conversation")
        self.convs.move_to_end(conv)
        return state

    # ---- policy facts ---------------------------------------------------------------------

    def _subject(self, state: ConvState, cmd: Command, now: int) -> Subject:
        """What the policy core needs about the conversation and the actor."""
        row, user = state.row, cmd.user
        member = state.members.get(user)
        mute = state.mutes.get(user)
        return Subject(kind=row.kind, visibility=row.visibility, role=member.role if member else None, now=now,
                       instance_role=cmd.instance_role, slow_mode_s=row.slow_mode_s, read_only=row.read_only,
                       overrides=row.permissions or None, muted_until=mute.until if mute else 0,
                       guest=cmd.guest, allow_guests=row.allow_guests)

    def _check(self, s: Subject, action: Action) -> None:
        policy.check(s, action, self.instance)

    def _account_age(self, user: str, facts: Facts, now: int) -> int | None:
        created = self._created_at.get(user)
        if created is None:
            created = facts.created_at.get(user)
        return None if created is None else now - created

    def _screen(self, cmd: Command, text: str, now: int, batch: Batch) -> str | None:
        """The content filter's verdict: raises on a rejection (audited), returns a flag's reason."""
        if self._filter is None:
            return None
        verdict = self._filter.check(text, conv=cmd.conv, sender=cmd.user)
        if verdict is None:
            return None
        if verdict.action == "reject":
            # A refused text is not stored, so the entry keeps only who and why.
            _audit(batch, now, SYSTEM, "message.reject", cmd.user, cmd.conv, verdict.reason, rule="content_filter")
            raise Forbidden(verdict.reason, rule="content_filter")
        return verdict.reason

    # ---- messages -------------------------------------------------------------------------

    def _send(self, cmd: Command, body: F.Send, facts: Facts, now: int, batch: Batch) -> dict[str, object]:
        key = (cmd.conv, cmd.user, body.cmid)
        earlier = self._idem.get(key) or self._pending_idem.get(key) or facts.idem.get(key)
        state = self._existing(cmd.conv)
        if earlier is not None:  # stored before: the original answer, whatever changed since
            seq, ts = earlier
            return {"conv": cmd.conv, "seq": seq, "ts": ts}
        row, user = state.row, cmd.user
        text_hash = hash(body.text)
        flood = state.floods.get(user)
        repeats = 1
        if flood is not None and flood.text_hash == text_hash and now - flood.since < self.instance.flood_window_s * 1000:
            repeats = flood.count + 1
        flag: str | None = None
        if self._enforce:
            s = self._subject(state, cmd, now)
            s.last_sent_at = state.last_sent.get(user, 0)
            s.repeats = repeats
            if state.blocks:
                peer = next((u for u in state.members if u != user), None)
                s.blocked = (peer, user) in state.blocks
                s.blocking = (user, peer) in state.blocks
            s.links = policy.count_links(body.text)
            if body.mentions:
                s.mentions = len(set(body.mentions))
            if s.links or s.mentions:
                s.account_age_ms = self._account_age(user, facts, now)
            denial = policy.decide(s, Action.SEND, self.instance)
            if denial is not None:
                if denial.rule == "flood":
                    self._auto_mute(state, user, now, denial.reason, batch)
                policy.raise_for(denial)
            flag = self._screen(cmd, body.text, now, batch)
        member = state.members.get(user)
        if member is None:
            raise NotFound("no such conversation")
        if body.reply_to is not None and not member.visible_from <= body.reply_to <= row.last_seq:
            raise BadRequest("reply_to names no message you can see")
        attachments = list(dict.fromkeys(body.attachments))
        for attachment in attachments:
            _check_attachment(cmd, attachment, facts)
        row.last_seq += 1
        seq = row.last_seq
        msg = Message(
            conv=cmd.conv, seq=seq, sender=user, ts=now, cmid=body.cmid, text=body.text,
            reply_to=body.reply_to, attachments=attachments,
            mentions=list(dict.fromkeys(body.mentions)),
        )
        member.read_seq = seq
        state.last_sent[user] = now
        if flood is None:
            state.floods[user] = Flood(text_hash, repeats, now)
        else:  # updated in place: no allocation per send
            if repeats == 1:
                flood.text_hash, flood.since = text_hash, now
            flood.count = repeats
        self._pending_idem[key] = (seq, now)
        batch.assigned.append(key)
        batch.heads.add(cmd.conv)
        batch.cursors.add((cmd.conv, user))
        batch.mutations.append(InsertMessage(msg))
        if flag is not None:
            _audit(batch, now, SYSTEM, "message.flag", f"{cmd.conv}/{seq}", cmd.conv, flag, sender=user)
        batch.emit(cmd.conv, event_frame("message.new", message=msg))
        return {"conv": cmd.conv, "seq": seq, "ts": now}

    def _auto_mute(self, state: ConvState, user: str, now: int, reason: str, batch: Batch) -> None:
        """The flood rule's sanction: a timed mute by `system`, announced and audited like a human one."""
        until = now + self.instance.flood_mute_s * 1000
        self._put_mute(state, user, until, SYSTEM, reason, now, batch)
        state.floods.pop(user, None)
        _audit(batch, now, SYSTEM, "member.mute", user, state.row.id, reason, until=until, auto=True, rule="flood")

    def _visible_message(self, state: ConvState, member: MemberRow | None, seq: int, facts: Facts) -> Message:
        msg = facts.messages.get((state.row.id, seq))
        if msg is None or seq < (member.visible_from if member else 1):
            raise NotFound("no such message")
        return msg

    def _edit(self, cmd: Command, state: ConvState, body: F.Edit, facts: Facts, now: int,
              batch: Batch) -> dict[str, object]:
        member = policy.member_or_hide(state.row, state.members.get(cmd.user))
        msg = self._visible_message(state, member, body.seq, facts)
        if msg.sender != cmd.user:
            raise Forbidden("only the sender may edit a message", rule="not_sender")
        if msg.deleted:
            raise Conflict("the message was deleted")
        flag: str | None = None
        if self._enforce:
            s = self._subject(state, cmd, now)
            s.links = policy.count_links(body.text)
            if s.links:
                s.account_age_ms = self._account_age(cmd.user, facts, now)
            self._check(s, Action.EDIT_OWN)
            flag = self._screen(cmd, body.text, now, batch)
        msg.text, msg.edited_at = body.text, now
        batch.mutations.append(UpdateMessage(msg.conv, msg.seq, msg.text, now, False))
        if flag is not None:
            _audit(batch, now, SYSTEM, "message.flag", f"{cmd.conv}/{msg.seq}", cmd.conv, flag, sender=cmd.user)
        batch.emit(cmd.conv, event_frame("message.edited", message=msg))
        return {"conv": cmd.conv, "seq": body.seq}

    def _delete(self, cmd: Command, state: ConvState, body: F.Delete, facts: Facts, now: int,
                batch: Batch) -> dict[str, object]:
        member = state.members.get(cmd.user)
        if member is None and cmd.instance_role not in policy.STAFF_ROLES:
            policy.member_or_hide(state.row, member)
        msg = self._visible_message(state, member, body.seq, facts)
        own = msg.sender == cmd.user
        if not own:
            s = self._subject(state, cmd, now)
            denial = policy.decide(s, Action.DELETE_ANY, self.instance)
            if denial is not None:
                if denial.hidden:
                    policy.raise_for(denial)
                raise Forbidden("only the sender, or an owner, admin or moderator, may delete a message",
                                rule=denial.rule)
        if not msg.deleted:
            msg.text, msg.attachments, msg.deleted = None, [], True
            batch.mutations.append(UpdateMessage(msg.conv, msg.seq, None, msg.edited_at, True))
            if not own:
                self._audit_moderator(cmd, batch, now, "message.delete", f"{cmd.conv}/{body.seq}", body.reason,
                                      sender=msg.sender)
            batch.emit(cmd.conv, event_frame("message.deleted", message=msg))
        return {"conv": cmd.conv, "seq": body.seq}

    def _react(self, cmd: Command, state: ConvState, body: F.React, facts: Facts,
               batch: Batch) -> dict[str, object]:
        member = policy.authorize(state.row, state.members.get(cmd.user), Action.READ, self.instance)
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
        member = policy.authorize(state.row, state.members.get(cmd.user), Action.READ, self.instance)
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
            # Opening (or reopening) a direct chat is writing to the peer.
            peer = members[0]
            s = Subject(kind="direct", visibility="private", role="member", now=now,
                        blocked=(peer, cmd.user) in facts.blocks, blocking=(cmd.user, peer) in facts.blocks)
            self._check(s, Action.SEND)
        else:
            for user in members:  # adding someone to a new group is inviting them
                s = Subject(kind=body.kind, visibility=body.visibility, role="owner", now=now,
                            blocked=(user, cmd.user) in facts.blocks)
                self._check_invitee(s, user)
        existing = self.convs.get(cmd.conv)
        if existing is not None:
            if body.kind == "direct":
                missing = [(u, "member") for u in (cmd.user, members[0]) if u not in existing.members]
                self._add_members(existing, missing, None, now, batch)
                existing.blocks = {p for p in facts.blocks if set(p) == {cmd.user, members[0]}}
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
        if body.kind == "direct":
            state.blocks = {p for p in facts.blocks if set(p) == {cmd.user, members[0]}}
        self.convs[cmd.conv] = state
        batch.mutations.append(CreateConv(row))
        self._add_members(state, [(cmd.user, "owner"), *((u, "member") for u in members)], None, now, batch)
        return {"conv": state.view(cmd.user)}

    def _check_invitee(self, s: Subject, user: str) -> None:
        denial = policy.decide(s, Action.INVITE, self.instance)
        if denial is not None:
            raise Forbidden(f"{user}: {denial.reason}", rule=denial.rule)

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
            ban = state.bans.get(cmd.user)
            s = self._subject(state, cmd, now)
            s.banned_until = ban.until if ban else 0
            self._check(s, Action.JOIN)
            if row.password_hash is not None and not password_ok:
                raise Forbidden("wrong password for this conversation", rule="password")
            self._add_members(state, [(cmd.user, "member")], None, now, batch)
        return {"conv": state.view(cmd.user)}

    def _leave(self, cmd: Command, state: ConvState, batch: Batch) -> dict[str, object]:
        policy.member_or_hide(state.row, state.members.get(cmd.user))
        self._remove(state, cmd.user, {}, batch)
        return {}

    def _remove(self, state: ConvState, user: str, fields: dict[str, object], batch: Batch) -> None:
        """`user` leaves (or is removed): `member.left` to everyone, the leaver included."""
        row = state.row
        del state.members[user]
        state.last_sent.pop(user, None)
        state.floods.pop(user, None)
        batch.mutations.append(DropMember(row.id, user))
        batch.emit(row.id, event_frame("member.left", conv=row.id, user=user, **fields), also=[user],
                   members_changed=True)
        if row.owner == user and state.members and row.kind != "direct":
            self._pass_ownership(state, batch)

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
        s = self._subject(state, cmd, now)
        self._check(s, Action.INVITE)
        unknown = [u for u in body.users if u not in facts.users]
        if unknown:
            raise NotFound(f"no such user: {unknown[0]}")
        joining = [(u, "member") for u in dict.fromkeys(body.users) if u not in state.members]
        for user, _ in joining:
            ban = state.bans.get(user)
            s.target_banned_until = ban.until if ban else 0
            s.blocked = (user, cmd.user) in facts.blocks
            self._check_invitee(s, user)
        self._add_members(state, joining, cmd.user, now, batch)
        return {}

    def _update(self, cmd: Command, state: ConvState, body: F.ConvUpdate, facts: Facts, now: int,
                batch: Batch) -> dict[str, object]:
        row = state.row
        s = self._subject(state, cmd, now)
        settings = any(v is not UNSET for v in (body.title, body.visibility, body.history, body.password,
                                                body.slow_mode_s, body.read_only, body.allow_guests))
        if settings:
            self._check(s, Action.SET_INFO)
        if body.permissions is not UNSET:
            self._check(s, Action.SET_PERMISSIONS)
            impossible = [p for p in body.permissions if policy.min_role(row.kind, Action(p), None, self.instance) is None]
            if impossible:
                raise BadRequest(f"{impossible[0]} is not possible in a {row.kind} conversation")
        new = ConvRow(**{f: getattr(row, f) for f in row.__struct_fields__})
        changed: dict[str, str | int | bool | None] = {}
        if body.title is not UNSET:
            new.title = body.title
        if body.visibility is not UNSET:
            new.visibility = body.visibility
        if body.history is not UNSET:
            new.history = body.history
        if body.slow_mode_s is not UNSET:
            new.slow_mode_s = body.slow_mode_s
        if body.read_only is not UNSET:
            new.read_only = body.read_only
        if body.allow_guests is not UNSET:
            new.allow_guests = body.allow_guests
        if body.permissions is not UNSET:
            new.permissions = {str(k): v for k, v in body.permissions.items()}
        if body.password is not UNSET:
            if body.password is None:
                new.password_hash = None
            else:
                if new.visibility != "public":
                    raise BadRequest("only public conversations take a password")
                new.password_hash = facts.password_hashes.get(request_key(cmd))
                if new.password_hash is None:
                    raise BadRequest("the password could not be set")
                changed["password"] = "set"
        if new.visibility != "public" and new.password_hash is not None:
            new.password_hash = None  # a private conversation is reached by invitation only
        for name in ("title", "visibility", "history", "slow_mode_s", "read_only", "allow_guests"):
            if getattr(new, name) != getattr(row, name):
                changed[name] = getattr(new, name)
        if new.permissions != row.permissions:
            changed["permissions"] = json.dumps(new.permissions, sort_keys=True)
        if row.password_hash is not None and new.password_hash is None:
            changed["password"] = "cleared"
        if not changed:
            return {"conv": state.view(cmd.user)}
        if new.history == "full" and row.history != "full":
            # From now on every member sees the whole history, not only since they joined.
            for member in state.members.values():
                if member.visible_from != 1:
                    member.visible_from = 1
                    batch.mutations.append(PutMember(member))
        state.row = new
        batch.mutations.append(UpdateConv(new))
        self._audit_moderator(cmd, batch, now, "conv.update", row.id, None, **changed)
        for user in state.members:
            batch.emit(row.id, event_frame("conv.updated", conv=state.view(user)), to=[user])
        return {"conv": state.view(cmd.user)}

    def _pin(self, cmd: Command, state: ConvState, body: F.Pin, facts: Facts, now: int,
             batch: Batch) -> dict[str, object]:
        row = state.row
        s = self._subject(state, cmd, now)
        self._check(s, Action.PIN)
        msg = self._visible_message(state, state.members.get(cmd.user), body.seq, facts)
        if body.on == (body.seq in row.pinned):
            return {}
        if body.on:
            if msg.deleted:
                raise Conflict("the message was deleted")
            if len(row.pinned) >= MAX_PINS:
                raise Conflict(f"at most {MAX_PINS} messages may be pinned; unpin one first")
            row.pinned = [*row.pinned, body.seq]
        else:
            row.pinned = [p for p in row.pinned if p != body.seq]
        batch.mutations.append(UpdateConv(row))
        if row.kind != "direct":
            self._audit_moderator(cmd, batch, now, "message.pin" if body.on else "message.unpin",
                                  f"{row.id}/{body.seq}", None)
        batch.emit(row.id, event_frame("pin", conv=row.id, seq=body.seq, on=body.on, by=cmd.user))
        return {}

    # ---- moderation of members ------------------------------------------------------------

    def _on_member(self, cmd: Command, state: ConvState, target: str, action: Action, now: int,
                   new_role: str | None = None) -> MemberRow | None:
        """Decide an action on `target` (the actor must outrank them); their membership, if any."""
        s = self._subject(state, cmd, now)
        member = state.members.get(target)
        s.target_role = member.role if member else None
        s.new_role = new_role
        self._check(s, action)
        if target == cmd.user:
            raise BadRequest("moderation acts on other members, not on yourself")
        return member

    def _role(self, cmd: Command, state: ConvState, body: F.MemberRole, now: int,
              batch: Batch) -> dict[str, object]:
        row = state.row
        member = self._on_member(cmd, state, body.user, Action.MANAGE_ROLES, now, body.role)
        if member is None:
            raise NotFound("that user is not a member of this conversation")
        if member.role == body.role:
            return {}
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
            batch.emit(row.id, event_frame("member.updated", conv=row.id, user=m.user, role=m.role, by=cmd.user))
            batch.emit(row.id, event_frame("conv.updated", conv=state.view(m.user)), to=[m.user])
        self._audit_moderator(cmd, batch, now, "member.role", member.user, None, role=body.role, previous=old)
        return {}

    def _mute(self, cmd: Command, state: ConvState, body: F.MemberMute | F.MemberUnmute, now: int,
              batch: Batch) -> dict[str, object]:
        member = self._on_member(cmd, state, body.user, Action.MUTE, now)
        if isinstance(body, F.MemberUnmute):
            return self._lift(cmd, state, state.mutes, "mute", "member.unmuted", body.user, now, batch)
        if member is None:
            raise NotFound("that user is not a member of this conversation")
        until = FOREVER if body.duration_s is None else now + body.duration_s * 1000
        self._put_mute(state, body.user, until, cmd.user, body.reason, now, batch)
        self._audit_moderator(cmd, batch, now, "member.mute", body.user, body.reason,
                              until=None if until == FOREVER else until)
        return {"until": None if until == FOREVER else until}

    def _lift(self, cmd: Command, state: ConvState, sanctions: dict[str, SanctionRow], kind: str, event: str,
              user: str, now: int, batch: Batch) -> dict[str, object]:
        """Unmute or unban: gone from state and store, announced (to the user too) and audited."""
        if sanctions.pop(user, None) is None:
            return {}
        conv = state.row.id
        batch.mutations.append(DropSanction(conv, user, kind))
        batch.emit(conv, event_frame(event, conv=conv, user=user, by=cmd.user), also=[user])
        self._audit_moderator(cmd, batch, now, f"member.un{kind}", user, None)
        return {}

    def _put_mute(self, state: ConvState, user: str, until: int, by: str, reason: str | None, now: int,
                  batch: Batch) -> None:
        row = SanctionRow(conv=state.row.id, user=user, kind="mute", until=until, by=by, at=now, reason=reason)
        state.mutes[user] = row
        batch.mutations.append(PutSanction(row))
        batch.emit(state.row.id, event_frame("member.muted", conv=state.row.id, user=user,
                                             until=None if until == FOREVER else until, by=by, reason=reason))

    def _kick(self, cmd: Command, state: ConvState, body: F.MemberKick, now: int,
              batch: Batch) -> dict[str, object]:
        member = self._on_member(cmd, state, body.user, Action.KICK, now)
        if member is None:
            raise NotFound("that user is not a member of this conversation")
        fields: dict[str, object] = {"by": cmd.user}
        if body.reason is not None:
            fields["reason"] = body.reason
        self._remove(state, body.user, fields, batch)
        self._audit_moderator(cmd, batch, now, "member.kick", body.user, body.reason)
        return {}

    def _ban(self, cmd: Command, state: ConvState, body: F.MemberBan | F.MemberUnban, facts: Facts, now: int,
             batch: Batch) -> dict[str, object]:
        row = state.row
        member = self._on_member(cmd, state, body.user, Action.BAN, now)
        if isinstance(body, F.MemberUnban):
            return self._lift(cmd, state, state.bans, "ban", "member.unbanned", body.user, now, batch)
        if member is None and body.user not in facts.users:
            raise NotFound(f"no such user: {body.user}")
        until = FOREVER if body.duration_s is None else now + body.duration_s * 1000
        sanction = SanctionRow(conv=row.id, user=body.user, kind="ban", until=until, by=cmd.user, at=now,
                               reason=body.reason)
        state.bans[body.user] = sanction
        batch.mutations.append(PutSanction(sanction))
        if member is not None:
            self._remove(state, body.user, {"by": cmd.user}, batch)
        batch.emit(row.id, event_frame("member.banned", conv=row.id, user=body.user, by=cmd.user,
                                       until=None if until == FOREVER else until, reason=body.reason),
                   also=[body.user])
        self._audit_moderator(cmd, batch, now, "member.ban", body.user, body.reason,
                              until=None if until == FOREVER else until)
        return {"until": None if until == FOREVER else until}

    # ---- blocking -------------------------------------------------------------------------

    def _block(self, cmd: Command, body: F.UserBlock | F.UserUnblock, facts: Facts, now: int,
               batch: Batch) -> dict[str, object]:
        """Blocks live with the pair's direct conversation, whose single writer decides them (it
        need not exist). Only the blocker's own sessions hear of it."""
        user, other = cmd.user, body.user
        if other == user:
            raise BadRequest("you cannot block yourself")
        if cmd.conv != direct_conv_id(user, other):
            raise BadRequest("a block is routed to the pair's direct conversation")
        if other not in facts.users:
            raise NotFound(f"no such user: {other}")
        on = isinstance(body, F.UserBlock)
        pair = (user, other)
        if on == (pair in facts.blocks):
            return {}
        state = self.convs.get(cmd.conv)
        if on:
            facts.blocks.add(pair)
            batch.mutations.append(PutBlock(user, other, now))
        else:
            facts.blocks.discard(pair)
            batch.mutations.append(DropBlock(user, other))
        if state is not None:  # the direct chat's send path reads its own copy
            state.blocks = {p for p in facts.blocks if set(p) == {user, other}}
        batch.emit(cmd.conv, event_frame("user.blocked" if on else "user.unblocked", user=other), to=[user])
        return {}

    # ---- audit ----------------------------------------------------------------------------

    def _audit_moderator(self, cmd: Command, batch: Batch, now: int, action: str, target: str,
                         reason: str | None, **details: str | int | bool | None) -> None:
        if cmd.instance_role is not None:
            details["instance_role"] = cmd.instance_role
        _audit(batch, now, cmd.user, action, target, cmd.conv, reason, **details)


def _audit(batch: Batch, now: int, actor: str, action: str, target: str, conv: str | None,
           reason: str | None, **details: str | int | bool | None) -> None:
    """An audit entry, written in the same transaction as the action it records."""
    batch.mutations.append(PutAudit(AuditEntry(at=now, actor=actor, action=action, target=target, conv=conv,
                                               reason=reason, details=details)))


def _check_attachment(cmd: Command, attachment: str, facts: Facts) -> None:
    """A message carries only what its sender uploaded to its conversation, once uploaded."""
    row = facts.attachments.get(attachment)
    if row is None or row.conv != cmd.conv or row.uploader != cmd.user:
        raise NotFound(f"no such attachment: {attachment}")
    if not row.uploaded:
        raise Conflict(f"attachment {attachment} is not uploaded yet: complete the upload first")
