"""The SQLite rows of conversations, members, messages, sanctions and invitations: their columns,
and the records they are read back as."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from parley.frames import CallRecord, Message
from parley.records import ConvRow, InvitationRow, MemberRow, SanctionRow

MSG_COLS = "conv, seq, sender, ts, cmid, text, reply_to, attachments, mentions, edited_at, deleted, call"
CONV_COLS = ("id, kind, title, visibility, password_hash, history, owner, created_at, last_seq, slow_mode_s, "
             "read_only, permissions, pinned, allow_guests, topic")
N_CONV = 15
SANCTION_COLS = "conv, user, kind, until, by, at, reason"
MEMBER_COLS = "conv, user, role, visible_from, read_seq, joined_at, delivered_seq"
INVITATION_COLS = "conv, user, by, at"
json_encode = msgspec.json.Encoder().encode
_ids_decode = msgspec.json.Decoder(list[str])
_seqs_decode = msgspec.json.Decoder(list[int])
_perms_decode = msgspec.json.Decoder(dict[str, str])
_record_decode = msgspec.json.Decoder(CallRecord).decode


def call_record(record: CallRecord | None) -> bytes | None:
    """The `call` column of a message: JSON, as the wire has it."""
    return json_encode(record) if record is not None else None


def message_row(row: Sequence[Any]) -> Message:
    return Message(
        conv=row[0], seq=row[1], sender=row[2], ts=row[3], cmid=row[4], text=row[5],
        reply_to=row[6], attachments=_ids_decode.decode(row[7]) if row[7] else [],
        mentions=_ids_decode.decode(row[8]) if row[8] else [], edited_at=row[9], deleted=bool(row[10]),
        kind="call" if row[11] else "text", call=_record_decode(row[11]) if row[11] else None,
    )


def conv_row(row: Sequence[Any]) -> ConvRow:
    return ConvRow(id=row[0], kind=row[1], title=row[2], visibility=row[3], password_hash=row[4],
                   history=row[5], owner=row[6], created_at=row[7], last_seq=row[8], slow_mode_s=row[9],
                   read_only=bool(row[10]), permissions=_perms_decode.decode(row[11]) if row[11] else {},
                   pinned=_seqs_decode.decode(row[12]) if row[12] else [], allow_guests=bool(row[13]),
                   topic=row[14])


def conv_settings(r: ConvRow) -> tuple[Any, ...]:
    """The columns UpdateConv writes: the settings, not the head or the owner."""
    return (r.title, r.visibility, r.password_hash, r.history, r.slow_mode_s, int(r.read_only),
            json_encode(r.permissions) if r.permissions else None, json_encode(r.pinned) if r.pinned else None,
            int(r.allow_guests), r.topic)


def sanction_row(row: Sequence[Any]) -> SanctionRow:
    return SanctionRow(conv=row[0], user=row[1], kind=row[2], until=row[3], by=row[4], at=row[5], reason=row[6])


def member_row(row: Sequence[Any]) -> MemberRow:
    return MemberRow(conv=row[0], user=row[1], role=row[2], visible_from=row[3], read_seq=row[4],
                     joined_at=row[5], delivered_seq=row[6])


def invitation_row(row: Sequence[Any]) -> InvitationRow:
    return InvitationRow(conv=row[0], user=row[1], by=row[2], at=row[3])
