"""The outbound half of the protocol, typed like the inbound half (parley/frames.py): every event
the server sends, and every `ok` result, as a msgspec Struct.

An event is `{"op":"event","type":T,...}` on the wire (docs/protocol.md): its Struct is tagged
by `type`, `encode_event` puts `"op":"event"` in front, and `AnyEvent` decodes any of them. An
`ok` result is `{"op":"ok","rid":R,...}`: `Ok` and its subclasses, encoded with
`parley.frames.encode`. Field order is wire order. Optional fields that are left out when they
have no value (`[by]` in the docs) are in Structs with `omit_defaults`; the others are sent
as null.
"""

from __future__ import annotations

from typing import Literal, Union

import msgspec

from parley.frames import CallState, ConvView, EndReason, Media, Message, encode
from parley.profiles import Profile
from parley.records import NotifySettings

# ---- events --------------------------------------------------------------------------------


class Event(msgspec.Struct, tag_field="type"):
    """An event; subclasses name their `type` as their tag."""


class MessageEvent(Event):
    """An event about one message: the whole message object as it now is."""

    message: Message


class FileInfo(msgspec.Struct, omit_defaults=True):
    """An attachment of a new message as its recipients need it to show it: what it is, how big,
    and for images their size and the thumbnails (longest sides) `GET /v1/attachments/{id}`
    signs URLs for. Non-images have no `width`, `height` or `thumbs`."""

    id: str
    name: str
    size: int
    mime: str
    width: int | None = None
    height: int | None = None
    thumbs: list[int] = []


class MessageNew(MessageEvent, tag="message.new", omit_defaults=True):
    #: One per id of `message.attachments`, in that order; absent when there are none.
    files: list[FileInfo] = []


class MessageEdited(MessageEvent, tag="message.edited"):
    pass


class MessageDeleted(MessageEvent, tag="message.deleted"):
    """`message` is the tombstone: `deleted`, no text, no attachments."""


class Reaction(Event, tag="reaction"):
    conv: str
    seq: int
    emoji: str
    user: str
    on: bool


class ReadReceipt(Event, tag="read"):
    conv: str
    user: str
    seq: int


class DeliveredReceipt(Event, tag="delivered"):
    """One of `user`'s devices received every message up to `seq` (conversations up to
    receipts_max_members, not channels)."""

    conv: str
    user: str
    seq: int


class UserTyping(Event, tag="typing"):
    conv: str
    user: str


class MemberEvent(Event):
    """An event about one member of a conversation."""

    conv: str
    user: str


class MemberJoined(MemberEvent, tag="member.joined", omit_defaults=True):
    role: str
    #: Who invited them; absent when they joined themselves or came with the new conversation.
    by: str | None = None


class MemberLeft(MemberEvent, tag="member.left", omit_defaults=True):
    #: Who removed them (a kick or a ban); absent when they left.
    by: str | None = None
    reason: str | None = None


class MemberUpdated(MemberEvent, tag="member.updated", omit_defaults=True):
    role: str
    #: Who changed the role; absent when ownership passed on by itself.
    by: str | None = None


class MemberMuted(MemberEvent, tag="member.muted"):
    #: ms since the epoch; null: until unmuted.
    until: int | None
    #: A user id, or "system" for an automatic mute.
    by: str
    reason: str | None


class MemberUnmuted(MemberEvent, tag="member.unmuted"):
    by: str


class MemberBanned(MemberEvent, tag="member.banned"):
    by: str
    #: ms since the epoch; null: until unbanned.
    until: int | None
    reason: str | None


class MemberUnbanned(MemberEvent, tag="member.unbanned"):
    by: str


class ConvUpdated(Event, tag="conv.updated"):
    """The conversation as its recipient sees it (sent to that recipient's sessions only)."""

    conv: ConvView


class PinChanged(Event, tag="pin"):
    conv: str
    seq: int
    on: bool
    by: str


class UserBlocked(Event, tag="user.blocked"):
    user: str


class UserUnblocked(Event, tag="user.unblocked"):
    user: str


class InviteNew(Event, tag="invite.new"):
    """To the invitee's sessions: an invitation to accept (`invite.accept`) or decline."""

    conv: str
    kind: str
    title: str | None
    by: str
    #: ms since the epoch.
    at: int


class InviteRemoved(Event, tag="invite.removed"):
    """To the invitee's sessions: the invitation is settled (accepted: they are a member now)."""

    conv: str
    accepted: bool


class PresenceChanged(Event, tag="presence", omit_defaults=True):
    user: str
    status: Literal["online", "offline"]
    #: ms since the epoch; with "offline" only.
    last_seen: int | None = None


class UserUpdated(Event, tag="user.updated"):
    """A user changed their profile: to their own sessions and everyone who shares a
    conversation with them."""

    user: Profile


class Resync(Event, tag="resync", omit_defaults=True):
    """Events were dropped for this session (of `conv`, or of any): call `sync`."""

    conv: str | None = None


class CallEvent(Event, kw_only=True):
    """An event about one call of a conversation (calls/state.py decides them)."""

    call: str
    conv: str


class CallRinging(CallEvent, tag="call.ringing", kw_only=True):
    """A call started (and who rings for it); sent again with `ringing` empty when the ring
    timeout passes while a group call goes on."""

    media: Media
    initiator: str
    ringing: tuple[str, ...]
    ring_deadline: int


class CallAccepted(CallEvent, tag="call.accepted", kw_only=True):
    """A user answered (or joined a call in progress) on `device`: its other devices stop ringing."""

    user: str
    device: str


class CallDeclined(CallEvent, tag="call.declined", kw_only=True, omit_defaults=True):
    """A callee declined on `device`, or was found `busy` in another call (then no device)."""

    user: str
    device: str | None = None
    busy: bool = False


class CallJoined(CallEvent, tag="call.joined", kw_only=True):
    """A user's first device entered the LiveKit room."""

    user: str
    device: str


class CallLeft(CallEvent, tag="call.left", kw_only=True, omit_defaults=True):
    """A user left the call (hung up, its last device left the room, or `removed` by moderation)."""

    user: str
    device: str | None = None
    removed: bool = False


class CallEnded(CallEvent, tag="call.ended", kw_only=True):
    reason: EndReason
    #: Milliseconds from the answer to the end; 0 for a call nobody answered.
    duration: int


AnyCallEvent = CallRinging | CallAccepted | CallDeclined | CallJoined | CallLeft | CallEnded

class NotifySettingsChanged(Event, tag="notify.settings"):
    """The user changed a notification setting (on any device; sent to all of their sessions):
    `conv` null is the account default; `settings` null: the conversation follows it again."""

    conv: str | None
    settings: NotifySettings | None


AnyEvent = Union[
    MessageNew, MessageEdited, MessageDeleted, Reaction, ReadReceipt, DeliveredReceipt, UserTyping,
    MemberJoined, MemberLeft, MemberUpdated, MemberMuted, MemberUnmuted, MemberBanned, MemberUnbanned,
    ConvUpdated, PinChanged, UserBlocked, UserUnblocked, PresenceChanged, Resync, UserUpdated, InviteNew,
    InviteRemoved,
    CallRinging, CallAccepted, CallDeclined, CallJoined, CallLeft, CallEnded,
    NotifySettingsChanged,
]

#: `{"type":...}` becomes `{"op":"event","type":...}`: msgspec writes a tag before any field.
_EVENT_PREFIX = b'{"op":"event",'


def encode_event(event: Event) -> bytes:
    """The frame of `event`, built once and written as-is to every recipient's socket."""
    return _EVENT_PREFIX + encode(event)[1:]


# ---- ok results ------------------------------------------------------------------------------


class Ok(msgspec.Struct, tag_field="op", tag="ok"):
    """The answer to a request that returns nothing but `rid`; every result below extends it."""

    rid: str


class HelloResult(Ok):
    session_id: str
    user_id: str
    server_time: int
    heartbeat_s: int
    limits: dict[str, int]
    #: When the token expires (unix seconds): the session ends then (4003) unless `auth` moves it.
    expires_at: int


class PingResult(Ok):
    server_time: int


class AuthResult(Ok):
    #: The session's new expiry (unix seconds): the fresh token's.
    expires_at: int


class UserPresence(msgspec.Struct):
    user: str
    status: Literal["online", "offline"]


class PresenceResult(Ok):
    presence: list[UserPresence]


class HistoryResult(Ok):
    messages: list[Message]


class ConvSync(msgspec.Struct):
    """One conversation in a `sync` answer: the messages after the client's seq, up to a page."""

    conv: str
    last_seq: int
    read_seq: int
    unread: int
    messages: list[Message]
    #: The page was cut: continue with `history` after the last one.
    more: bool


class SyncResult(Ok):
    convs: list[ConvSync]


class LastMessage(msgspec.Struct):
    """What a conversation list shows of a conversation's newest message the caller may see."""

    seq: int
    ts: int
    sender: str
    #: The text, white space collapsed, cut to PREVIEW_CHARS (an ellipsis ends a cut one); for a
    #: message of attachments alone, e.g. "2 attachments"; null when deleted.
    preview: str | None
    attachments: int
    deleted: bool


class ConvListItem(ConvView, kw_only=True):
    """A `conv` object in a `conv.list` answer: with its newest message (null: none yet)."""

    last_message: LastMessage | None = None


class ConvListResult(Ok):
    convs: list[ConvListItem]
    #: Profiles of the direct peers and the last senders (at most CONV_LIST_PROFILES_MAX).
    profiles: dict[str, Profile] = {}


class MemberInfo(msgspec.Struct):
    user: str
    role: str
    joined_at: int
    #: Only in the caller's own entry, and only while the caller is muted there: when the mute
    #: ends (ms; null: until unmuted). So a client that (re)loads knows to keep its composer off.
    muted_until: int | None | msgspec.UnsetType = msgspec.UNSET


class MembersResult(Ok):
    members: list[MemberInfo]
    profiles: dict[str, Profile]
    #: More members after the last one: ask again with `after` = its user.
    more: bool


class SanctionInfo(msgspec.Struct):
    """A mute or ban in force, as `conv.sanctions` lists it."""

    user: str
    #: ms since the epoch; null: until lifted.
    until: int | None
    by: str
    at: int
    reason: str | None


class SanctionsResult(Ok):
    """`conv.sanctions`: the mutes (for those who may mute) and the bans (for those who may ban)
    in force, oldest first, and the profiles of the users they name."""

    mutes: list[SanctionInfo]
    bans: list[SanctionInfo]
    profiles: dict[str, Profile]


class ReceiptsResult(Ok):
    conv: str
    seq: int
    #: Members besides the caller, and how many of them have `seq` delivered and read.
    members: int
    delivered_count: int
    read_count: int
    #: Who, in conversations up to receipts_max_members that are not channels; else null.
    delivered: list[str] | None
    read: list[str] | None


class ConvResult(Ok, omit_defaults=True):
    """conv.create, conv.join, conv.update, invite.accept: the conversation as the caller sees it."""

    conv: ConvView
    #: conv.create: the members who were invited instead of added (their choice); absent if none.
    invited: list[str] = []


class InviteResult(Ok):
    """conv.invite: who was added, and who was invited instead (their choice)."""

    added: list[str]
    invited: list[str]


class Invitation(msgspec.Struct):
    """A pending invitation, as `invite.list` lists it (the fields of `invite.new`)."""

    conv: str
    kind: str
    title: str | None
    by: str
    at: int


class InviteListResult(Ok):
    invites: list[Invitation]


class SendResult(Ok):
    conv: str
    seq: int
    ts: int


class MessageResult(Ok):
    """edit, delete: the message acted on."""

    conv: str
    seq: int


class SanctionResult(Ok):
    """member.mute, member.ban: when the sanction ends (ms since the epoch; null: never)."""

    until: int | None


class CallView(msgspec.Struct, kw_only=True):
    """The `call` object of docs/protocol.md: a call as every member may see it."""

    id: str
    conv: str
    media: Media
    state: CallState
    initiator: str
    direct: bool
    max_participants: int
    started_at: int
    ring_deadline: int
    #: Callees whose devices ring now.
    ringing: list[str]
    #: Users taking part now: the initiator and those who answered, less those who left.
    participants: list[str]
    #: Users with a device in the call's LiveKit room.
    in_room: list[str]
    answered_at: int | None
    ended_at: int | None
    end_reason: EndReason | None
    duration: int


class CallGrant(msgspec.Struct, kw_only=True):
    """What the conversation's writer lets the caller's device do in the call's room. Between
    chat_core and the gateway only: the gateway turns it into a `join` (a LiveKit token), so no
    token ever goes through the command log or the outbox."""

    role: Literal["speaker", "listener"]
    max_video_subscriptions: int


class CallResult(Ok, omit_defaults=True):
    """call.start, call.join (with `grant`, which the gateway replaces by `join`), call.decline,
    call.leave, call.end: the call as it now is."""

    call: CallView
    grant: CallGrant | None = None


class CallSettingsResult(Ok):
    """call.settings: the conversation's call settings (null: the instance's default)."""

    conv: str
    enabled: bool
    max_participants: int | None
    max_video_subscriptions: int | None
