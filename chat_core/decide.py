"""What every operation of chat_core/ops/ decides with: the `Operation` shape, the context of one
decision, the `Batch` that collects its effects, and the rules and state changes that more than
one family of operations shares (the policy's subject, audit entries, removing a member with the
owner's succession, muting).

All of it is pure: values in, mutations and events appended to the batch, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

import msgspec

from moderation import policy
from moderation.policy import FOREVER, Action, Subject
from parley import events as E
from parley.errors import Forbidden, NotFound
from parley.frames import WriteRequest
from parley.ids import partition_of
from parley.records import (
    AuditEntry, Command, ConvState, DropMember, EventRecord, Facts, IdemKey, Mutation, Needs, PutAudit, PutMember,
    PutOutbox, PutSanction, SanctionRow, SetConvHead, SetConvOwner, SetReadSeq,
)

if TYPE_CHECKING:
    from chat_core.core import ChatCore

#: The actor of automatic actions in the audit log and in events.
SYSTEM = "system"

#: An operation's `ok` reply; None for one that carries only the `rid`.
Result = E.Ok | None


@dataclass(slots=True)
class Batch:
    """What one batch of commands writes: mutations, then coalesced heads and cursors, then events."""

    mutations: list[Mutation] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)
    heads: set[str] = field(default_factory=set)
    cursors: set[tuple[str, str]] = field(default_factory=set)
    #: The idempotency keys this batch assigns, with their (seq, ts); remembered once it is durable.
    assigned: dict[IdemKey, tuple[int, int]] = field(default_factory=dict)
    #: The outbox rows of `finish`, in event order.
    outbox: list[PutOutbox] = field(default_factory=list)
    #: Stage timestamps of the command being decided, given to its events (parley.hops).
    t_ns: list[int] = field(default_factory=list)
    #: Trace context of the command being decided, given to its events (parley.tracing).
    trace: str | None = None

    def emit(self, conv: str, event: E.Event, *, to: list[str] | None = None,
             also: list[str] | None = None, members_changed: bool = False) -> None:
        self.events.append(EventRecord(conv, E.encode_event(event), to, also, members_changed, self.t_ns,
                                       self.trace))

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


class Decision(msgspec.Struct):
    """One command being decided: the writer (its caches and rules), the command, what was read
    for its batch, the time, and the batch its effects go into. A Struct because one is made per
    command, and a Struct is made in half the time of a dataclass."""

    core: ChatCore
    cmd: Command
    facts: Facts
    now: int
    batch: Batch

    @property
    def rid(self) -> str:
        """The request's id, which its `ok` result echoes."""
        return self.cmd.body.rid

    def conv(self) -> ConvState:
        """The command's conversation, which must exist."""
        convs = self.core.convs
        state = convs.get(self.cmd.conv)
        if state is None:
            raise NotFound("no such conversation")
        convs.move_to_end(self.cmd.conv)
        return state

    def subject(self, state: ConvState) -> Subject:
        """What the policy core needs about the conversation and the actor (in a direct chat,
        the blocks between the actor and the peer too)."""
        row, cmd = state.row, self.cmd
        member = state.members.get(cmd.user)
        mute = state.mutes.get(cmd.user)
        s = Subject(kind=row.kind, visibility=row.visibility, role=member.role if member else None, now=self.now,
                    instance_role=cmd.instance_role, slow_mode_s=row.slow_mode_s, read_only=row.read_only,
                    overrides=row.permissions or None, muted_until=mute.until if mute else 0,
                    guest=cmd.guest, allow_guests=row.allow_guests)
        if state.blocks:
            peer = next((u for u in state.members if u != cmd.user), None)
            s.blocked = (peer, cmd.user) in state.blocks
            s.blocking = (cmd.user, peer) in state.blocks
        return s

    def check(self, s: Subject, action: Action) -> None:
        policy.check(s, action, self.core.instance)

    def account_age(self, user: str) -> int | None:
        """ms since `user`'s account was created; None when it was not read (not needed)."""
        created = self.core.created_at.get(user)
        if created is None:
            created = self.facts.created_at.get(user)
        return None if created is None else self.now - created

    def screen(self, text: str, of: str = "message") -> str | None:
        """The content filter's verdict on the text of a message (or of a conv's title): raises on
        a rejection (audited as `<of>.reject`), returns a flag's reason."""
        content_filter = self.core.content_filter
        if content_filter is None:
            return None
        cmd = self.cmd
        verdict = content_filter.check(text, conv=cmd.conv, sender=cmd.user)
        if verdict is None:
            return None
        if verdict.action == "reject":
            # A refused text is not stored, so the entry keeps only who and why.
            self.audit(SYSTEM, f"{of}.reject", cmd.user, verdict.reason, rule="content_filter")
            raise Forbidden(verdict.reason, rule="content_filter")
        return verdict.reason

    def check_text(self, s: Subject, action: Action, text: str, of: str = "message") -> str | None:
        """`action` bringing `text` others read (an edit, a title): the policy with the text's links
        counted (and the account's age, when it has some), then the content filter; a flag's
        reason, if it flagged the text."""
        s.links = policy.count_links(text)
        if s.links:
            s.account_age_ms = self.account_age(self.cmd.user)
        self.check(s, action)
        return self.screen(text, of)

    def audit(self, actor: str, action: str, target: str, reason: str | None,
              **details: str | int | bool | None) -> None:
        """An audit entry about the command's conversation, written in the same transaction as
        the action it records."""
        self.batch.mutations.append(PutAudit(AuditEntry(at=self.now, actor=actor, action=action, target=target,
                                                        conv=self.cmd.conv, reason=reason, details=details)))

    def audit_moderator(self, action: str, target: str, reason: str | None,
                        **details: str | int | bool | None) -> None:
        """The actor's own action, with the instance role it acted under, if any."""
        if self.cmd.instance_role is not None:
            details["instance_role"] = self.cmd.instance_role
        self.audit(self.cmd.user, action, target, reason, **details)


Body = TypeVar("Body", bound=WriteRequest)


@dataclass(frozen=True, slots=True)
class Operation(Generic[Body]):
    """How chat_core handles one type of write request: what to read first, and the decision."""

    request: type[Body]
    decide: Callable[[Decision, Body], Result]
    #: Adds what `decide` reads from the store besides the command's conversation.
    needs: Callable[[ChatCore, Command, Body, Needs], None] | None = None
    #: The command's conversation is read before deciding; False where it need not exist.
    reads_conv: bool = True


# ---- shared by several families ---------------------------------------------------------


def needs_age_for_links(core: ChatCore, cmd: Command, text: str | None, needs: Needs) -> None:
    """The actor's account age is read when `text` has links (the new-account link rule)."""
    if text and policy.count_links(text) and cmd.user not in core.created_at:
        needs.accounts.add(cmd.user)


def shown_until(until: int) -> int | None:
    """A sanction's end as events and replies show it: null for one without an end."""
    return None if until == FOREVER else until


def put_mute(state: ConvState, user: str, until: int, by: str, reason: str | None, now: int, batch: Batch) -> None:
    row = SanctionRow(conv=state.row.id, user=user, kind="mute", until=until, by=by, at=now, reason=reason)
    state.mutes[user] = row
    batch.mutations.append(PutSanction(row))
    batch.emit(state.row.id, E.MemberMuted(conv=state.row.id, user=user, until=shown_until(until), by=by,
                                           reason=reason))


def remove_member(state: ConvState, user: str, batch: Batch, *, by: str | None = None,
                  reason: str | None = None) -> None:
    """`user` leaves (or is removed `by` someone): `member.left` to everyone, the leaver included."""
    row = state.row
    del state.members[user]
    state.last_sent.pop(user, None)
    state.floods.pop(user, None)
    batch.mutations.append(DropMember(row.id, user))
    batch.emit(row.id, E.MemberLeft(conv=row.id, user=user, by=by, reason=reason), also=[user],
               members_changed=True)
    if row.owner == user and state.members and row.kind != "direct":
        _pass_ownership(state, batch)


def _pass_ownership(state: ConvState, batch: Batch) -> None:
    """An owner who leaves hands the conversation to the highest-ranked, longest-standing member."""
    heir = max(state.members.values(),
               key=lambda m: (policy.ROLE_RANK[m.role], -m.joined_at, m.user))
    heir.role = "owner"
    state.row.owner = heir.user
    batch.mutations.append(PutMember(heir))
    batch.mutations.append(SetConvOwner(state.row.id, heir.user))
    batch.emit(state.row.id, E.MemberUpdated(conv=state.row.id, user=heir.user, role="owner"))
