"""Messages: send, edit, delete, react, read and pin.

A send is the hot path: it is idempotent by (conv, sender, cmid), checked by the whole policy
(slow mode, flood, links, mentions, blocks), screened by the content filter, then sequenced.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chat_core.decide import SYSTEM, Decision, Operation, Result, needs_age_for_links, put_mute
from moderation import policy
from moderation.policy import Action
from parley import events as E
from parley import frames as F
from parley.errors import BadRequest, Conflict, Forbidden, NotFound
from parley.frames import Message
from parley.limits import MAX_PINS
from parley.records import (
    AttachmentRow, Command, ConvState, Flood, InsertMessage, MemberRow, Needs, SetDeliveredSeq, SetReaction, UpdateConv,
    UpdateMessage,
)

if TYPE_CHECKING:
    from chat_core.core import ChatCore


def _send_needs(core: ChatCore, cmd: Command, body: F.Send, needs: Needs) -> None:
    key = (cmd.conv, cmd.user, body.cmid)
    if key not in core.idem:
        needs.idem.add(key)
    needs.attachments.update(body.attachments)
    if (body.mentions or policy.count_links(body.text)) and cmd.user not in core.created_at:
        needs.accounts.add(cmd.user)


def _send(d: Decision, body: F.Send) -> Result:
    cmd, now, batch, core = d.cmd, d.now, d.batch, d.core
    key = (cmd.conv, cmd.user, body.cmid)
    earlier = core.idem.get(key) or batch.assigned.get(key) or d.facts.idem.get(key)
    state = d.conv()
    if earlier is not None:  # stored before: the original answer, whatever changed since
        seq, ts = earlier
        return E.SendResult(rid=d.rid, conv=cmd.conv, seq=seq, ts=ts)
    row, user = state.row, cmd.user
    text_hash = hash(body.text)
    flood = state.floods.get(user)
    repeats = 1
    if flood is not None and flood.text_hash == text_hash and now - flood.since < core.instance.flood_window_s * 1000:
        repeats = flood.count + 1
    flag: str | None = None
    if core.enforce:
        s = d.subject(state)
        s.last_sent_at = state.last_sent.get(user, 0)
        s.repeats = repeats
        s.links = policy.count_links(body.text)
        if body.mentions:
            s.mentions = len(set(body.mentions))
        if s.links or s.mentions:
            s.account_age_ms = d.account_age(user)
        denial = policy.decide(s, Action.SEND, core.instance)
        if denial is not None:
            if denial.rule == "flood":
                _auto_mute(d, state, user, denial.reason)
            policy.raise_for(denial)
        flag = d.screen(body.text)
    member = state.members.get(user)
    if member is None:
        raise NotFound("no such conversation")
    if body.reply_to is not None and not member.visible_from <= body.reply_to <= row.last_seq:
        raise BadRequest("reply_to names no message you can see")
    attachments = list(dict.fromkeys(body.attachments))
    for attachment in attachments:
        _check_attachment(d, attachment)
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
    batch.assigned[key] = (seq, now)
    batch.heads.add(cmd.conv)
    batch.cursors.add((cmd.conv, user))
    batch.mutations.append(InsertMessage(msg))
    if flag is not None:
        d.audit(SYSTEM, "message.flag", f"{cmd.conv}/{seq}", flag, sender=user)
    if attachments:
        files = [_file_info(d.facts.attachments[a]) for a in attachments]
        batch.emit(cmd.conv, E.MessageNew(message=msg, files=files))
    else:
        batch.emit(cmd.conv, E.MessageNew(message=msg))
    return E.SendResult(rid=d.rid, conv=cmd.conv, seq=seq, ts=now)


def _auto_mute(d: Decision, state: ConvState, user: str, reason: str) -> None:
    """The flood rule's sanction: a timed mute by `system`, announced and audited like a human one."""
    until = d.now + d.core.instance.flood_mute_s * 1000
    put_mute(state, user, until, SYSTEM, reason, d.now, d.batch)
    state.floods.pop(user, None)
    d.audit(SYSTEM, "member.mute", user, reason, until=until, auto=True, rule="flood")


def _file_info(row: AttachmentRow) -> E.FileInfo:
    return E.FileInfo(id=row.id, name=row.name, size=row.size, mime=row.mime, width=row.width, height=row.height,
                      thumbs=list(row.thumbs))


def _check_attachment(d: Decision, attachment: str) -> None:
    """A message carries only what its sender uploaded to its conversation, once uploaded."""
    row = d.facts.attachments.get(attachment)
    if row is None or row.conv != d.cmd.conv or row.uploader != d.cmd.user:
        raise NotFound(f"no such attachment: {attachment}")
    if not row.uploaded:
        raise Conflict(f"attachment {attachment} is not uploaded yet: complete the upload first")


def _message_needs(core: ChatCore, cmd: Command, body: F.Edit | F.Delete | F.React | F.Pin, needs: Needs) -> None:
    needs.messages.add((cmd.conv, body.seq))


def _visible_message(d: Decision, state: ConvState, member: MemberRow | None, seq: int) -> Message:
    msg = d.facts.messages.get((state.row.id, seq))
    if msg is None or seq < (member.visible_from if member else 1):
        raise NotFound("no such message")
    return msg


def _edit_needs(core: ChatCore, cmd: Command, body: F.Edit, needs: Needs) -> None:
    _message_needs(core, cmd, body, needs)
    needs_age_for_links(core, cmd, body.text, needs)


def _edit(d: Decision, body: F.Edit) -> Result:
    cmd, now = d.cmd, d.now
    state = d.conv()
    member = policy.member_or_hide(state.row, state.members.get(cmd.user))
    msg = _visible_message(d, state, member, body.seq)
    if msg.sender != cmd.user:
        raise Forbidden("only the sender may edit a message", rule="not_sender")
    if msg.kind == "call":
        raise BadRequest("a call's record cannot be edited")
    if msg.deleted:
        raise Conflict("the message was deleted")
    key = (msg.conv, msg.seq)
    edits = d.facts.edits.get(key, 0) + 1
    if edits > d.core.limits.max_edits_per_message:
        raise Conflict(f"a message may be edited at most {d.core.limits.max_edits_per_message} times; "
                       "send a new one")
    flag: str | None = None
    if d.core.enforce:
        s = d.subject(state)
        s.last_sent_at = state.last_sent.get(cmd.user, 0)
        flag = d.check_text(s, Action.EDIT_OWN, body.text)
    state.last_sent[cmd.user] = now  # slow mode counts an edit as a message
    msg.text, msg.edited_at = body.text, now
    d.facts.edits[key] = edits
    d.batch.mutations.append(UpdateMessage(msg.conv, msg.seq, msg.text, now, False, edits))
    if flag is not None:
        d.audit(SYSTEM, "message.flag", f"{cmd.conv}/{msg.seq}", flag, sender=cmd.user)
    d.batch.emit(cmd.conv, E.MessageEdited(message=msg))
    return E.MessageResult(rid=d.rid, conv=cmd.conv, seq=body.seq)


def _delete(d: Decision, body: F.Delete) -> Result:
    cmd = d.cmd
    state = d.conv()
    member = state.members.get(cmd.user)
    if member is None and cmd.instance_role not in policy.STAFF_ROLES:
        policy.member_or_hide(state.row, member)
    msg = _visible_message(d, state, member, body.seq)
    own = msg.sender == cmd.user
    if not own:
        denial = policy.decide(d.subject(state), Action.DELETE_ANY, d.core.instance)
        if denial is not None:
            if denial.hidden:
                policy.raise_for(denial)
            raise Forbidden("only the sender, or an owner, admin or moderator, may delete a message",
                            rule=denial.rule)
    if not msg.deleted:
        msg.text, msg.attachments, msg.deleted = None, [], True
        d.batch.mutations.append(UpdateMessage(msg.conv, msg.seq, None, msg.edited_at, True))
        if not own:
            d.audit_moderator("message.delete", f"{cmd.conv}/{body.seq}", body.reason, sender=msg.sender)
        d.batch.emit(cmd.conv, E.MessageDeleted(message=msg))
    return E.MessageResult(rid=d.rid, conv=cmd.conv, seq=body.seq)


def _react(d: Decision, body: F.React) -> Result:
    cmd = d.cmd
    state = d.conv()
    s = d.subject(state)
    if body.on:
        d.check(s, Action.REACT)
    else:  # taking one's reaction back: any member, muted or not
        d.check(s, Action.READ)
    msg = _visible_message(d, state, state.members[cmd.user], body.seq)
    if msg.deleted:
        raise Conflict("the message was deleted")
    users = msg.reactions.get(body.emoji, [])
    if body.on == (cmd.user in users):
        return None
    if body.on:
        _check_reaction_caps(d, msg, body.emoji)
        msg.reactions.setdefault(body.emoji, []).append(cmd.user)
    else:
        users.remove(cmd.user)
        if not users:
            del msg.reactions[body.emoji]
    d.batch.mutations.append(SetReaction(cmd.conv, body.seq, body.emoji, cmd.user, body.on))
    d.batch.emit(cmd.conv, E.Reaction(conv=cmd.conv, seq=body.seq, emoji=body.emoji, user=cmd.user, on=body.on))
    return None


def _check_reaction_caps(d: Decision, msg: Message, emoji: str) -> None:
    """A message takes a bounded number of distinct reactions, and each user a few of them."""
    limits, user = d.core.limits, d.cmd.user
    if emoji not in msg.reactions and len(msg.reactions) >= limits.max_reactions_per_message:
        raise Conflict(f"a message takes at most {limits.max_reactions_per_message} different reactions; "
                       "add yours to one of them")
    if sum(user in users for users in msg.reactions.values()) >= limits.max_reactions_per_user:
        raise Conflict(f"you may put at most {limits.max_reactions_per_user} reactions on one message; "
                       "take one back first")


def _read(d: Decision, body: F.Read) -> Result:
    cmd = d.cmd
    state = d.conv()
    member = policy.authorize(state.row, state.members.get(cmd.user), Action.READ, d.core.instance)
    if body.seq > state.row.last_seq:
        raise BadRequest(f"seq {body.seq} is beyond the last message ({state.row.last_seq})")
    if body.seq <= member.read_seq:
        return None
    member.read_seq = body.seq
    d.batch.cursors.add((cmd.conv, cmd.user))
    # Channels keep who-read-what private: only the reader's own devices hear it.
    to = [cmd.user] if state.row.kind == "channel" else None
    d.batch.emit(cmd.conv, E.ReadReceipt(conv=cmd.conv, user=cmd.user, seq=body.seq), to=to)
    return None


def _received(d: Decision, body: F.Received) -> Result:
    """A member's devices hold the messages up to `seq`: their delivered cursor moves forward.
    Sent by the gateway (gathered from `received` requests); its reply reaches no one."""
    cmd = d.cmd
    state = d.conv()
    member = policy.authorize(state.row, state.members.get(cmd.user), Action.READ, d.core.instance)
    seq = min(body.seq, state.row.last_seq)
    if seq <= max(member.delivered_seq, member.read_seq):  # reading implies receiving
        return None
    member.delivered_seq = seq
    d.batch.mutations.append(SetDeliveredSeq(cmd.conv, cmd.user, seq))
    if state.row.kind != "channel" and len(state.members) <= d.core.receipts_max_members:
        d.batch.emit(cmd.conv, E.DeliveredReceipt(conv=cmd.conv, user=cmd.user, seq=seq))
    return None


def _pin(d: Decision, body: F.Pin) -> Result:
    cmd = d.cmd
    state = d.conv()
    row = state.row
    d.check(d.subject(state), Action.PIN)
    msg = _visible_message(d, state, state.members.get(cmd.user), body.seq)
    if body.on == (body.seq in row.pinned):
        return None
    if body.on:
        if msg.deleted:
            raise Conflict("the message was deleted")
        if len(row.pinned) >= MAX_PINS:
            raise Conflict(f"at most {MAX_PINS} messages may be pinned; unpin one first")
        row.pinned = [*row.pinned, body.seq]
    else:
        row.pinned = [p for p in row.pinned if p != body.seq]
    d.batch.mutations.append(UpdateConv(row))
    if row.kind != "direct":
        d.audit_moderator("message.pin" if body.on else "message.unpin", f"{row.id}/{body.seq}", None)
    d.batch.emit(row.id, E.PinChanged(conv=row.id, seq=body.seq, on=body.on, by=cmd.user))
    return None


SEND = Operation(F.Send, _send, _send_needs)
EDIT = Operation(F.Edit, _edit, _edit_needs)
DELETE = Operation(F.Delete, _delete, _message_needs)
REACT = Operation(F.React, _react, _message_needs)
READ = Operation(F.Read, _read)
RECEIVED = Operation(F.Received, _received)
PIN = Operation(F.Pin, _pin, _message_needs)
