"""What one `apply` of the Cassandra store writes, planned without I/O: a batch's mutations
collapsed into their final statements by a `match` over the Mutation union that mypy checks
for a missing case, and those statements packed into logged batches under the size limit."""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, assert_never

import msgspec

from parley.adapters.cassandra.partitions import DAY_MS, IdClock, bucket_of, id_ms, outbox_tb
from parley.errors import Conflict
from parley.frames import Message
from parley.records import (
    AuditEntry, Call, CallSettings, ConvRow, CreateConv, DropBlock, DropCallMember, DropInvitation, DropMember,
    DropSanction, InsertMessage, InvitationRow, MemberRow, Mutation, PutAudit, PutBlock, PutCall, PutCallMember,
    PutCallSettings, PutInvitation, PutMember, PutOutbox, PutSanction, SanctionRow, SetConvHead, SetConvOwner,
    SetReaction, SetDeliveredSeq, SetReadSeq, UpdateConv, UpdateMessage,
)

#: Logged batches spanning partitions are refused past 50 KiB by default
#: (batch_size_fail_threshold); stay well below it.
BATCH_BYTES = 32_000
BATCH_STATEMENTS = 200

_record_encode = msgspec.msgpack.Encoder().encode
_details_encode = msgspec.json.Encoder().encode

Statement = tuple[str, list[Any]]

#: Ring timers are spread over this many partitions per hour of their deadline (`ring_timers`).
RING_SHARDS = 4
RING_HOUR_MS = 3_600_000
#: Ring timers outlive any lookback of `ringing_calls` (CallStore): then they expire.
RING_TIMER_TTL_S = 2 * 86400
encode_packed = msgspec.msgpack.Encoder().encode


def ring_shard(call_id: str) -> int:
    return zlib.crc32(call_id.encode()) % RING_SHARDS


@dataclass
class WritePlan:
    """The statements of one batch of mutations, in the order they must be written."""

    #: (conv, bucket) -> message_claim statements: one conditional batch each.
    claims: dict[tuple[str, int], list[Statement]] = field(default_factory=dict)
    #: Idempotency keys of the new messages, checked before the claims.
    idem_keys: list[tuple[str, str, str]] = field(default_factory=list)
    #: Everything else but the blocks and the heads, in logged batches.
    logged: list[Statement] = field(default_factory=list)
    #: Rows of `blocks`, written once `logged` (holding their mirrors in `blocked_by`) is: chat_core
    #: decides from `blocks`, so a block it sees is never missing from `blocked_by`, and a retry
    #: after a failure in between writes both again.
    blocks: list[Statement] = field(default_factory=list)
    #: The heads: written last, once everything they cover is.
    heads: list[Statement] = field(default_factory=list)
    outbox_ids: list[int] = field(default_factory=list)


class AuditRows:
    """Audit entries as rows of `audit`, one per scope it is read by (all, its actor, its
    target). Ids come from this store's clock, and the key holds its writer id as well: two
    stores that make the same id do not overwrite each other's rows."""

    def __init__(self) -> None:
        self._ids = IdClock()
        self._writer = uuid.uuid4().hex

    def __call__(self, entries: Sequence[AuditEntry]) -> list[Statement]:
        out: list[Statement] = []
        for e in entries:
            id_ = self._ids.next()
            day = id_ms(id_) // DAY_MS
            details = _details_encode(e.details)
            for scope in ("all", f"actor:{e.actor}", f"target:{e.target}"):
                out.append(("audit_put", [scope, day, id_, self._writer, e.at, e.actor, e.action, e.target, e.conv,
                                          e.reason, details]))
                out.append(("audit_day_put", [scope, day]))
        return out


def _message_params(m: Message) -> list[Any]:
    return [m.conv, bucket_of(m.seq), m.seq, m.sender, m.ts, m.cmid, m.text, m.reply_to, list(m.attachments) or None,
            list(m.mentions) or None, m.edited_at, m.deleted]


def plan_writes(mutations: Sequence[Mutation], next_outbox_id: Callable[[int], int],
                audit_rows: Callable[[Sequence[AuditEntry]], list[Statement]], idem_ttl_s: int,
                outbox_ttl_s: int) -> WritePlan:
    """Collapse a batch into its final writes. Cassandra gives every statement of a batch one
    timestamp, and on a tie a deletion wins: a leave then a rejoin must become one insert, an
    edit of a message sent in the same batch part of its insert. Raises Conflict for a seq or
    idempotency key used twice in the batch."""
    plan = WritePlan()
    convs: dict[str, ConvRow] = {}
    owners: dict[str, str] = {}
    heads: dict[str, int] = {}
    members: dict[tuple[str, str], MemberRow | None] = {}
    cursors: dict[tuple[str, str], int] = {}
    delivered: dict[tuple[str, str], int] = {}
    inserts: dict[tuple[str, int], Message] = {}
    updates: dict[tuple[str, int], UpdateMessage] = {}
    edit_counts: dict[tuple[str, int], int] = {}
    reactions: dict[tuple[str, int, str, str], bool] = {}
    idem: set[tuple[str, str, str]] = set()
    settings: dict[str, ConvRow] = {}
    sanctions: dict[tuple[str, str, str], SanctionRow | None] = {}
    blocks: dict[tuple[str, str], int | None] = {}
    calls: dict[str, Call] = {}
    #: conv -> its live call after this batch (None: none), for the conversations a call of
    #: this batch belongs to.
    live: dict[str, Call | None] = {}
    call_settings: dict[str, CallSettings] = {}
    call_members: dict[tuple[str, str], str | None] = {}
    invitations: dict[tuple[str, str], InvitationRow | None] = {}
    for m in mutations:
        match m:
            case CreateConv():
                convs[m.row.id] = msgspec.structs.replace(m.row)
                heads[m.row.id] = max(heads.get(m.row.id, 0), m.row.last_seq)
            case SetConvOwner():
                if m.conv in convs:
                    convs[m.conv].owner = m.owner
                else:
                    owners[m.conv] = m.owner
            case SetConvHead():
                heads[m.conv] = max(heads.get(m.conv, 0), m.last_seq)
            case PutMember():
                members[(m.row.conv, m.row.user)] = m.row
                key = (m.row.conv, m.row.user)
                cursors[key] = max(cursors.get(key, 0), m.row.read_seq)
            case DropMember():
                members[(m.conv, m.user)] = None
            case SetReadSeq():
                cursors[(m.conv, m.user)] = max(cursors.get((m.conv, m.user), 0), m.read_seq)
            case SetDeliveredSeq():
                delivered[(m.conv, m.user)] = max(delivered.get((m.conv, m.user), 0), m.delivered_seq)
            case InsertMessage():
                msg = m.message
                key3 = (msg.conv, msg.sender, msg.cmid)
                if (msg.conv, msg.seq) in inserts or key3 in idem:
                    raise Conflict(f"seq {msg.seq} or cmid {msg.cmid!r} used twice in one batch")
                inserts[(msg.conv, msg.seq)] = msgspec.structs.replace(msg)
                idem.add(key3)
            case UpdateMessage():
                if m.edits and not m.deleted:  # a delete keeps the stored count
                    edit_counts[(m.conv, m.seq)] = max(edit_counts.get((m.conv, m.seq), 0), m.edits)
                new = inserts.get((m.conv, m.seq))
                if new is not None:
                    new.text, new.edited_at, new.deleted = m.text, m.edited_at, m.deleted
                    if m.deleted:
                        new.attachments = []
                else:
                    prior = updates.get((m.conv, m.seq))
                    deleted = m.deleted or (prior is not None and prior.deleted)
                    updates[(m.conv, m.seq)] = UpdateMessage(m.conv, m.seq, m.text, m.edited_at, deleted)
            case SetReaction():
                reactions[(m.conv, m.seq, m.emoji, m.user)] = m.on
            case PutOutbox():
                id_ = next_outbox_id(m.shard)
                plan.outbox_ids.append(id_)
                plan.logged.append(("outbox_put", [m.shard, outbox_tb(id_), id_, _record_encode(m.record),
                                                   outbox_ttl_s]))
            case PutAudit():
                plan.logged.extend(audit_rows([m.entry]))
            case UpdateConv():
                created = convs.get(m.row.id)
                if created is not None:  # created in this batch: one insert with the final settings
                    _copy_settings(m.row, created)
                else:
                    settings[m.row.id] = msgspec.structs.replace(m.row)
            case PutSanction():
                sanctions[(m.row.conv, m.row.user, m.row.kind)] = msgspec.structs.replace(m.row)
            case DropSanction():
                sanctions[(m.conv, m.user, m.kind)] = None
            case PutBlock():
                blocks[(m.blocker, m.blocked)] = m.at
            case DropBlock():
                blocks[(m.blocker, m.blocked)] = None
            case PutCall(call=c):
                calls[c.id] = c
                current = live.get(c.conv)
                if c.live:
                    live[c.conv] = c
                elif current is None or current.id == c.id:
                    live[c.conv] = None
            case PutCallSettings():
                call_settings[m.conv] = m.settings
            case PutCallMember():
                call_members[(m.user, m.call)] = m.conv
            case DropCallMember():
                call_members[(m.user, m.call)] = None
            case PutInvitation():
                invitations[(m.row.conv, m.row.user)] = m.row
            case DropInvitation():
                invitations[(m.conv, m.user)] = None
            case _:
                assert_never(m)

    for (conv, seq), msg in sorted(inserts.items()):
        plan.claims.setdefault((conv, bucket_of(seq)), []).append(("message_claim", _message_params(msg)))
        plan.idem_keys.append((conv, msg.sender, msg.cmid))
        plan.logged.append(("idem_put", [conv, msg.sender, msg.cmid, seq, msg.ts, idem_ttl_s]))
        if msg.call is not None:
            plan.logged.append(("message_call_put", [conv, bucket_of(seq), seq, encode_packed(msg.call)]))
    plan.logged.extend(_call_statements(calls, live, call_settings, call_members))
    for row in convs.values():
        plan.logged.append(("conv_insert", [row.id, row.kind, row.title, row.visibility, row.password_hash,
                                            row.history, row.owner, row.created_at]))
        if _has_settings(row):  # no row reads as the defaults
            plan.logged.append(("settings_put", _settings_params(row)))
        if row.topic is not None:  # no row reads as no topic
            plan.logged.append(("topic_put", [row.id, row.topic]))
    for row in settings.values():  # written whole: the settings after this batch
        plan.logged += [("conv_update", [row.title, row.visibility, row.password_hash, row.history, row.id]),
                        ("settings_put", _settings_params(row)), ("topic_put", [row.id, row.topic])]
    for (conv, user, kind), srow in sanctions.items():
        if srow is None:
            plan.logged.append(("sanction_drop", [conv, user, kind]))
        else:
            plan.logged.append(("sanction_put", [conv, user, kind, srow.until, srow.by, srow.at, srow.reason]))
    for (blocker, blocked), at in blocks.items():
        if at is None:
            plan.logged.append(("blocked_by_drop", [blocked, blocker]))
            plan.blocks.append(("block_drop", [blocker, blocked]))
        else:
            plan.logged.append(("blocked_by_put", [blocked, blocker, at]))
            plan.blocks.append(("block_put", [blocker, blocked, at]))
    for (conv, user), irow in invitations.items():
        if irow is None:
            plan.logged += [("invitation_drop", [conv, user]), ("invitation_by_user_drop", [user, conv])]
        else:
            plan.logged += [("invitation_put", [conv, user, irow.by, irow.at]),
                            ("invitation_by_user_put", [user, conv, irow.by, irow.at])]
    plan.logged.extend(("conv_set_owner", [owner, conv]) for conv, owner in owners.items())
    for (conv, user), mrow in members.items():
        if mrow is None:
            plan.logged += [("member_drop", [conv, user]), ("user_conv_drop", [user, conv])]
        else:
            plan.logged += [("member_put", [conv, user, mrow.role, mrow.visible_from, mrow.joined_at]),
                            ("user_conv_put", [user, conv])]
    # Cursors and heads only move forward: their write timestamp is the value itself.
    plan.logged.extend(("cursor_set", [seq, seq, conv, user]) for (conv, user), seq in cursors.items())
    plan.logged.extend(("delivered_set", [seq, seq, conv, user]) for (conv, user), seq in delivered.items())
    for (conv, seq), u in updates.items():
        if u.deleted:
            plan.logged.append(("message_delete", [None, u.edited_at, True, None, conv, bucket_of(seq), seq]))
        else:
            plan.logged.append(("message_edit", [u.text, u.edited_at, False, conv, bucket_of(seq), seq]))
    plan.logged.extend(("message_edits_put", [conv, bucket_of(seq), seq, edits])
                       for (conv, seq), edits in edit_counts.items())
    for (conv, seq, emoji, user), on in reactions.items():
        plan.logged.append(("reaction_put" if on else "reaction_drop", [conv, bucket_of(seq), seq, emoji, user]))
    plan.heads = [("head_set", [seq, seq, conv]) for conv, seq in sorted(heads.items())]
    return plan


def _call_statements(calls: dict[str, Call], live: dict[str, Call | None], settings: dict[str, CallSettings],
                     members: dict[tuple[str, str], str | None]) -> list[Statement]:
    out: list[Statement] = []
    bodies = {call_id: encode_packed(call) for call_id, call in calls.items()}
    for call in calls.values():
        out.append(("call_put", [call.id, call.conv, bodies[call.id]]))
        out.append(("ring_timer_put", [ring_shard(call.id), call.ring_deadline // RING_HOUR_MS, call.id, call.conv,
                                       call.ring_deadline, call.live and bool(call.ringing), RING_TIMER_TTL_S]))
    for conv, now_live in live.items():
        # No live call is an empty id and body, not a deletion: no tombstone per call.
        out.append(("live_call_put", [conv, now_live.id, bodies[now_live.id]] if now_live is not None
                    else [conv, "", b""]))
    out.extend(("call_settings_put", [conv, s.enabled, s.max_participants, s.max_video_subscriptions])
               for conv, s in settings.items())
    for (user, call_id), in_conv in members.items():
        out.append(("call_member_put", [user, call_id, in_conv]) if in_conv is not None
                   else ("call_member_drop", [user, call_id]))
    return out


_SETTINGS = ("title", "topic", "visibility", "password_hash", "history", "slow_mode_s", "read_only", "allow_guests",
             "permissions", "pinned")


def _copy_settings(src: ConvRow, dst: ConvRow) -> None:
    """What UpdateConv writes: the settings, not the head or the owner."""
    for name in _SETTINGS:
        value = getattr(src, name)
        setattr(dst, name, dict(value) if isinstance(value, dict) else list(value) if isinstance(value, list)
                else value)


def _has_settings(r: ConvRow) -> bool:
    return bool(r.slow_mode_s or r.read_only or r.allow_guests or r.permissions or r.pinned)


def _settings_params(r: ConvRow) -> list[Any]:
    # Empty collections are bound as null: Cassandra reads an empty collection back as null anyway.
    return [r.id, r.slow_mode_s, r.read_only, r.allow_guests, dict(r.permissions) or None, list(r.pinned) or None]


def _size(params: Sequence[Any]) -> int:
    return 16 + sum(len(p) if isinstance(p, (str, bytes)) else 8 for p in params if p is not None)


def pack(statements: Sequence[Statement], max_bytes: int = BATCH_BYTES,
         max_statements: int = BATCH_STATEMENTS) -> list[list[Statement]]:
    """Split statements into logged batches under Cassandra's batch size limit, in order."""
    out: list[list[Statement]] = []
    size = 0
    for stmt in statements:
        n = _size(stmt[1])
        if not out or size + n > max_bytes or len(out[-1]) >= max_statements:
            out.append([])
            size = 0
        out[-1].append(stmt)
        size += n
    return out

