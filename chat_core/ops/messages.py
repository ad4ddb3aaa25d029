"""Messages: send, edit, delete, react, read and pin.

A send is the hot path: it is idempotent by (conv, sender, cmid), checked by the whole policy
(slow mode, flood, links, mentions, blocks), screened by the content filter, then sequenced.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chat_core.decide import SYSTEM, Decision, Operation, Result, put_mute
from moderation import policy
from moderation.policy import Action
from parley import events as E
from parley import frames as F
from parley.errors import BadRequest, Conflict, Forbidden, NotFound
from parley.frames import Message
from parley.limits import MAX_PINS
from parley.records import (
    Command, ConvState, Flood, InsertMessage, MemberRow, Needs, SetReaction, UpdateConv, UpdateMessage,
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
        if state.blocks:
            peer = next((u for u in state.members if u != user), None)
            s.blocked = (peer, user) in state.blocks
            s.blocking = (user, peer) in state.blocks
        s.links = policy.count_links(body.text)
        if body.mentions:
            s.mentions = len(set(body.mentions))
        if s.links or s.mentions:
            s.account_age_ms = _account_age(d, user)
        denial = policy.decide(s, Action.SEND, core.instance)
        if denial is not None:
            if denial.rule == "flood":
                _auto_mute(d, state, user, denial.reason)
            policy.raise_for(denial)
        flag = _screen(d, body.text)
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
    batch.emit(cmd.conv, E.MessageNew(message=msg))
    return E.SendResult(rid=d.rid, conv=cmd.conv, seq=seq, ts=now)


def _auto_mute(d: Decision, state: ConvState, user: str, reason: str) -> None:
    """The flood rule's sanction: a timed mute by `system`, announced and audited like a human one."""
    until = d.now + d.core.instance.flood_mute_s * 1000
    put_mute(state, user, until, SYSTEM, reason, d.now, d.batch)
    state.floods.pop(user, None)
    d.audit(SYSTEM, "member.mute", user, reason, until=until, auto=True, rule="flood")


def _account_age(d: Decision, user: str) -> int | None:
    created = d.core.created_at.get(user)
    if created is None:
        created = d.facts.created_at.get(user)
    return None if created is None else d.now - created


def _screen(d: Decision, text: str) -> str | None:
    """The content filter's verdict: raises on a rejection (audited), returns a flag's reason."""
    content_filter = d.core.content_filter
    if content_filter is None:
        return None
    cmd = d.cmd
    verdict = content_filter.check(text, conv=cmd.conv, sender=cmd.user)
    if verdict is None:
        return None
    if verdict.action == "reject":
        # A refused text is not stored, so the entry keeps only who and why.
        d.audit(SYSTEM, "message.reject", cmd.user, verdict.reason, rule="content_filter")
        raise Forbidden(verdict.reason, rule="content_filter")
    return verdict.reason


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
    if policy.count_links(body.text) and cmd.user not in core.created_at:
        needs.accounts.add(cmd.user)


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
    flag: str | None = None
    if d.core.enforce:
        s = d.subject(state)
        s.links = policy.count_links(body.text)
        if s.links:
            s.account_age_ms = _account_age(d, cmd.user)
        d.check(s, Action.EDIT_OWN)
        flag = _screen(d, body.text)
    msg.text, msg.edited_at = body.text, now
    d.batch.mutations.append(UpdateMessage(msg.conv, msg.seq, msg.text, now, False))
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
    member = policy.authorize(state.row, state.members.get(cmd.user), Action.READ, d.core.instance)
    msg = _visible_message(d, state, member, body.seq)
    if msg.deleted:
        raise Conflict("the message was deleted")
    users = msg.reactions.setdefault(body.emoji, [])
    if body.on == (cmd.user in users):
        return None
    if body.on:
        users.append(cmd.user)
    else:
        users.remove(cmd.user)
        if not users:
            del msg.reactions[body.emoji]
    d.batch.mutations.append(SetReaction(cmd.conv, body.seq, body.emoji, cmd.user, body.on))
    d.batch.emit(cmd.conv, E.Reaction(conv=cmd.conv, seq=body.seq, emoji=body.emoji, user=cmd.user, on=body.on))
    return None


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
PIN = Operation(F.Pin, _pin, _message_needs)
