"""What chat_core's batches write to SQLite: the statement and parameters of each mutation,
decided by a `match` over the Mutation union that mypy checks for a missing case."""

from __future__ import annotations

from typing import Any, assert_never

import msgspec

from parley.adapters.sqlite.calls import (
    DROP_CALL_MEMBER, PUT_CALL, PUT_CALL_MEMBER, PUT_CALL_SETTINGS, drop_call_member, put_call, put_call_member,
    put_call_settings,
)
from parley.adapters.sqlite.database import marks
from parley.adapters.sqlite.moderation import AUDIT_INSERT, audit_params
from parley.adapters.sqlite.rows import (
    CONV_COLS, INVITATION_COLS, MEMBER_COLS, MSG_COLS, N_CONV, SANCTION_COLS, call_record, conv_settings,
    json_encode,
)
from parley.records import (
    CreateConv, DropBlock, DropCallMember, DropInvitation, DropMember, DropSanction, InsertMessage, Mutation,
    PutAudit, PutBlock, PutCall, PutCallMember, PutCallSettings, PutInvitation, PutMember, PutOutbox, PutSanction,
    SetConvHead, SetConvOwner, SetReaction, SetDeliveredSeq, SetReadSeq, UpdateConv, UpdateMessage,
)

_record_encode = msgspec.msgpack.Encoder().encode
# Built once: a batch's statements are grouped by their text, so equal ones are one object.
_INSERT_CONV = f"INSERT INTO convs ({CONV_COLS}) VALUES ({marks(N_CONV)})"
_INSERT_SANCTION = f"INSERT OR REPLACE INTO sanctions ({SANCTION_COLS}) VALUES ({marks(7)})"
_INSERT_MEMBER = f"INSERT OR REPLACE INTO members ({MEMBER_COLS}) VALUES ({marks(7)})"
_INSERT_MESSAGE = f"INSERT INTO messages ({MSG_COLS}) VALUES ({marks(12)})"
_INSERT_INVITATION = f"INSERT OR REPLACE INTO invitations ({INVITATION_COLS}) VALUES ({marks(4)})"


def write(m: Mutation) -> tuple[str, tuple[Any, ...]]:
    """The one statement that stores `m`, with its parameters. A batch runs them in order, so a
    send then an edit of it, or a leave then a rejoin, end as the last one left them."""
    match m:
        case CreateConv(row=r):
            return _INSERT_CONV, (r.id, r.kind, r.title, r.visibility, r.password_hash, r.history, r.owner,
                                  r.created_at, r.last_seq, *conv_settings(r)[4:])
        case UpdateConv(row=r):
            return ("UPDATE convs SET title = ?, visibility = ?, password_hash = ?, history = ?, slow_mode_s = ?, "
                    "read_only = ?, permissions = ?, pinned = ?, allow_guests = ?, topic = ? WHERE id = ?",
                    (*conv_settings(r), r.id))
        case SetConvHead():
            return "UPDATE convs SET last_seq = ? WHERE id = ?", (m.last_seq, m.conv)
        case SetConvOwner():
            return "UPDATE convs SET owner = ? WHERE id = ?", (m.owner, m.conv)
        case PutSanction(row=r):
            return _INSERT_SANCTION, (r.conv, r.user, r.kind, r.until, r.by, r.at, r.reason)
        case DropSanction():
            return "DELETE FROM sanctions WHERE conv = ? AND user = ? AND kind = ?", (m.conv, m.user, m.kind)
        case PutBlock():
            return ("INSERT INTO blocks (blocker, blocked, at) VALUES (?,?,?) ON CONFLICT DO NOTHING",
                    (m.blocker, m.blocked, m.at))
        case DropBlock():
            return "DELETE FROM blocks WHERE blocker = ? AND blocked = ?", (m.blocker, m.blocked)
        case PutMember(row=r):
            return _INSERT_MEMBER, (r.conv, r.user, r.role, r.visible_from, r.read_seq, r.joined_at, r.delivered_seq)
        case DropMember():
            return "DELETE FROM members WHERE conv = ? AND user = ?", (m.conv, m.user)
        case SetReadSeq():
            return "UPDATE members SET read_seq = ? WHERE conv = ? AND user = ?", (m.read_seq, m.conv, m.user)
        case SetDeliveredSeq():
            return ("UPDATE members SET delivered_seq = MAX(delivered_seq, ?) WHERE conv = ? AND user = ?",
                    (m.delivered_seq, m.conv, m.user))
        case InsertMessage(message=x):
            return (_INSERT_MESSAGE,
                    (x.conv, x.seq, x.sender, x.ts, x.cmid, x.text, x.reply_to,
                     json_encode(x.attachments) if x.attachments else None,
                     json_encode(x.mentions) if x.mentions else None, x.edited_at, int(x.deleted),
                     call_record(x.call)))
        case UpdateMessage():
            return ("UPDATE messages SET text = ?, edited_at = ?, deleted = ?, "
                    "attachments = CASE WHEN ? THEN NULL ELSE attachments END, "
                    "edits = CASE WHEN ? THEN edits ELSE ? END WHERE conv = ? AND seq = ?",
                    (m.text, m.edited_at, int(m.deleted), int(m.deleted), int(m.deleted), m.edits, m.conv, m.seq))
        case SetReaction():
            if m.on:
                return ("INSERT INTO reactions (conv, seq, emoji, user) VALUES (?,?,?,?) ON CONFLICT DO NOTHING",
                        (m.conv, m.seq, m.emoji, m.user))
            return ("DELETE FROM reactions WHERE conv = ? AND seq = ? AND emoji = ? AND user = ?",
                    (m.conv, m.seq, m.emoji, m.user))
        case PutInvitation(row=r):
            return _INSERT_INVITATION, (r.conv, r.user, r.by, r.at)
        case DropInvitation():
            return "DELETE FROM invitations WHERE conv = ? AND user = ?", (m.conv, m.user)
        case PutOutbox():
            return "INSERT INTO outbox (record, shard) VALUES (?, ?)", (_record_encode(m.record), m.shard)
        case PutAudit():
            return AUDIT_INSERT, audit_params(m.entry)
        case PutCall():
            return PUT_CALL, put_call(m)
        case PutCallSettings():
            return PUT_CALL_SETTINGS, put_call_settings(m)
        case PutCallMember():
            return PUT_CALL_MEMBER, put_call_member(m)
        case DropCallMember():
            return DROP_CALL_MEMBER, drop_call_member(m)
        case _:
            assert_never(m)
