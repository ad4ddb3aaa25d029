"""Client request frames (decoded once, strictly, at the edge), the wire objects both directions
share (message, conv) and error frames; the events and `ok` results the server sends are typed in
parley/events.py.

Requests are one tagged union keyed by `op`; msgspec rejects wrong types and unknown ops, and
the few rules msgspec cannot express (text length against the configured limit, exclusive
cursors) live in `check_request`, a pure function.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeGuard, Union, get_args

import emoji
import msgspec
from msgspec import Meta

from parley import limits as L
from parley.errors import BadRequest, ParleyError, TooLarge

Rid = Annotated[str, Meta(min_length=1, max_length=L.MAX_RID_CHARS)]
Id = Annotated[str, Meta(min_length=1, max_length=64)]
Cmid = Annotated[str, Meta(min_length=1, max_length=L.MAX_CMID_CHARS)]
Seq = Annotated[int, Meta(ge=1, le=2**53)]
Cursor = Annotated[int, Meta(ge=0, le=2**53)]
Users = Annotated[list[Id], Meta(max_length=L.MAX_MEMBERS_PER_REQUEST)]
Kind = Literal["direct", "group", "channel"]
Visibility = Literal["private", "public"]
HistoryMode = Literal["joined", "full"]
Role = Literal["owner", "admin", "moderator", "member"]
#: The permissions a conversation may override (moderation/policy.py OVERRIDABLE).
Permission = Literal["send", "edit_own", "delete_any", "invite", "kick", "ban", "mute", "pin", "set_info",
                     "start_call"]
Reason = Annotated[str, Meta(min_length=1, max_length=L.MAX_REASON_CHARS)]
Duration = Annotated[int, Meta(ge=1, le=L.MAX_SANCTION_S)]
UNSET = msgspec.UNSET
Unset = msgspec.UnsetType


# ---- calls: the vocabulary requests, events, messages and the stored call share --------------


class Media(StrEnum):
    AUDIO = "audio"
    VIDEO = "video"


class CallState(StrEnum):
    RINGING = "ringing"  # nobody has answered yet
    ACTIVE = "active"    # answered (or a call nobody is rung for, such as a channel's live room)
    ENDED = "ended"


class EndReason(StrEnum):
    HANGUP = "hangup"      # answered, then everyone left (or someone ended it)
    MISSED = "missed"      # nobody answered: the ring timed out or the caller gave up
    DECLINED = "declined"  # every callee declined (some may have been busy)
    BUSY = "busy"          # every callee was in another call
    FAILED = "failed"      # the media side failed (LiveKit unreachable, its server shut down)


class CallRecord(msgspec.Struct, frozen=True, kw_only=True):
    """The one entry a finished call leaves in its conversation's history (the `call` of a
    message of kind `call`), so a device that was off sees the call, or that it was missed, on sync."""

    call: str
    media: Media
    initiator: str
    #: The initiator and everyone who answered or joined, sorted.
    participants: tuple[str, ...]
    reason: EndReason
    started_at: int
    ended_at: int
    duration: int
    missed: bool


#: The cmid of a call's record in its conversation: one per call, whatever replays.
_CALL_RECORD_CMID = "call:"


def call_record_cmid(call_id: str) -> str:
    return _CALL_RECORD_CMID + call_id


def is_call_record(message: Message) -> bool:
    """Whether `message` may be a call's record: a store that keeps records apart looks up only
    these (a client may choose such a cmid too; then no record is found, and it stays text)."""
    return message.cmid.startswith(_CALL_RECORD_CMID)


# ---- what LiveKit's webhooks report about a call's room (calls/webhooks.py makes them) ------


class ParticipantJoined(msgspec.Struct, frozen=True, kw_only=True, tag="participant_joined"):
    call: str
    user: str
    device: str
    sid: str


class ParticipantLeft(msgspec.Struct, frozen=True, kw_only=True, tag="participant_left"):
    call: str
    user: str
    device: str
    sid: str
    #: The same identity connected again (LiveKit's DUPLICATE_IDENTITY or MIGRATION): this
    #: session's end is not the user leaving.
    replaced: bool = False


class RoomFinished(msgspec.Struct, frozen=True, kw_only=True, tag="room_finished"):
    call: str
    #: The room ended because its server shut down, not because the call was over.
    failed: bool = False


class RoomListed(msgspec.Struct, frozen=True, kw_only=True, tag="room_listed"):
    """Not a webhook: what the calls role's sweep found in the room of a call live for a while
    (RoomService ListRooms and ListParticipants), for the webhooks LiveKit lost."""

    call: str
    #: LiveKit has the room (ListRooms lists it).
    exists: bool
    #: The sids of the Parley participants in the room.
    sids: tuple[str, ...] = ()


RoomEvent = ParticipantJoined | ParticipantLeft | RoomFinished | RoomListed


class Request(msgspec.Struct, tag_field="op", kw_only=True, frozen=True):
    rid: Rid


class Hello(Request, tag="hello", frozen=True):
    #: May be empty: a missing credential is the token check's `unauthorized`, not a malformed frame.
    token: Annotated[str, Meta(max_length=8192)]
    device_id: Annotated[str, Meta(max_length=L.MAX_DEVICE_ID_CHARS)] | None = None


class Ping(Request, tag="ping", frozen=True):
    pass


class Auth(Request, tag="auth", frozen=True):
    """A fresh access token for the live session (same user): its expiry moves to the token's."""

    token: Annotated[str, Meta(max_length=8192)]


class ConvCreate(Request, tag="conv.create", frozen=True):
    kind: Kind
    members: Users = []
    title: Annotated[str, Meta(max_length=L.MAX_TITLE_CHARS)] | None = None
    visibility: Visibility = "private"
    password: Annotated[str, Meta(min_length=1, max_length=L.ROOM_PASSWORD_MAX_CHARS)] | None = None
    history: HistoryMode = "joined"


class ConvJoin(Request, tag="conv.join", frozen=True):
    conv: Id
    password: Annotated[str, Meta(max_length=L.ROOM_PASSWORD_MAX_CHARS)] | None = None


class ConvLeave(Request, tag="conv.leave", frozen=True):
    conv: Id


class ConvInvite(Request, tag="conv.invite", frozen=True):
    conv: Id
    users: Annotated[list[Id], Meta(min_length=1, max_length=L.MAX_MEMBERS_PER_REQUEST)]


class ConvList(Request, tag="conv.list", frozen=True):
    pass


class InviteAccept(Request, tag="invite.accept", frozen=True):
    conv: Id


class InviteDecline(Request, tag="invite.decline", frozen=True):
    conv: Id


class InviteList(Request, tag="invite.list", frozen=True):
    pass


class ConvUpdate(Request, tag="conv.update", frozen=True):
    """Change settings; an absent field stays as it is (`title`/`password` null clears them, and
    `topic` null or empty)."""

    conv: Id
    title: Annotated[str, Meta(max_length=L.MAX_TITLE_CHARS)] | None | Unset = UNSET
    topic: Annotated[str, Meta(max_length=L.MAX_TOPIC_CHARS)] | None | Unset = UNSET
    visibility: Visibility | Unset = UNSET
    history: HistoryMode | Unset = UNSET
    password: Annotated[str, Meta(min_length=1, max_length=L.ROOM_PASSWORD_MAX_CHARS)] | None | Unset = UNSET
    slow_mode_s: Annotated[int, Meta(ge=0, le=L.MAX_SLOW_MODE_S)] | Unset = UNSET
    read_only: bool | Unset = UNSET
    allow_guests: bool | Unset = UNSET
    #: Per-conversation role overrides: permission -> lowest role (replaces the whole map).
    permissions: dict[Permission, Role] | Unset = UNSET


class MemberRole(Request, tag="member.role", frozen=True):
    conv: Id
    user: Id
    role: Role


class MemberMute(Request, tag="member.mute", frozen=True):
    conv: Id
    user: Id
    #: Absent: until unmuted.
    duration_s: Duration | None = None
    reason: Reason | None = None


class MemberUnmute(Request, tag="member.unmute", frozen=True):
    conv: Id
    user: Id


class MemberKick(Request, tag="member.kick", frozen=True):
    conv: Id
    user: Id
    reason: Reason | None = None


class MemberBan(Request, tag="member.ban", frozen=True):
    conv: Id
    user: Id
    #: Absent: until unbanned.
    duration_s: Duration | None = None
    reason: Reason | None = None


class MemberUnban(Request, tag="member.unban", frozen=True):
    conv: Id
    user: Id


class Pin(Request, tag="pin", frozen=True):
    conv: Id
    seq: Seq
    on: bool = True


class UserBlock(Request, tag="user.block", frozen=True):
    user: Id


class UserUnblock(Request, tag="user.unblock", frozen=True):
    user: Id


class Send(Request, tag="send", frozen=True):
    conv: Id
    cmid: Cmid
    text: str
    reply_to: Seq | None = None
    #: Ids from POST /v1/uploads, uploaded by the sender to this conversation (chat_core checks).
    attachments: Annotated[list[Id], Meta(max_length=L.MAX_ATTACHMENTS_PER_MESSAGE)] = []
    mentions: Users = []


class Edit(Request, tag="edit", frozen=True):
    conv: Id
    seq: Seq
    text: str


class Delete(Request, tag="delete", frozen=True):
    conv: Id
    seq: Seq
    #: A moderator's reason, kept in the audit log (a sender deleting their own needs none).
    reason: Reason | None = None


class React(Request, tag="react", frozen=True):
    conv: Id
    seq: Seq
    emoji: Annotated[str, Meta(min_length=1, max_length=L.MAX_EMOJI_CHARS)]
    on: bool


class Read(Request, tag="read", frozen=True):
    conv: Id
    seq: Cursor


class Typing(Request, tag="typing", frozen=True):
    conv: Id


class PresenceGet(Request, tag="presence", frozen=True):
    """Who of these is online now; users who share no conversation with the caller are left out."""

    users: Annotated[list[Id], Meta(min_length=1, max_length=L.PRESENCE_QUERY_MAX)]


class ConvMembers(Request, tag="conv.members", frozen=True):
    """A page of the members, in user id order, with their profiles."""

    conv: Id
    after: Id | None = None
    limit: Annotated[int, Meta(ge=1, le=L.MEMBERS_PAGE_MAX)] = L.MEMBERS_PAGE_MAX


class ConvSanctions(Request, tag="conv.sanctions", frozen=True):
    """The mutes and bans in force, for those who may lift them (with the profiles to name them)."""

    conv: Id


class Received(Request, tag="received", frozen=True):
    """One of the caller's devices holds every message of `conv` up to `seq` (delivered)."""

    conv: Id
    seq: Seq


class Receipts(Request, tag="receipts", frozen=True):
    """Who of the members has message `seq` delivered and who has read it."""

    conv: Id
    seq: Seq


class History(Request, tag="history", frozen=True):
    conv: Id
    before: Cursor | None = None
    after: Cursor | None = None
    limit: Annotated[int, Meta(ge=1, le=L.HISTORY_MAX)] = L.HISTORY_DEFAULT


class Sync(Request, tag="sync", frozen=True):
    since: Annotated[dict[Id, Cursor], Meta(max_length=100_000)] = {}


class CallStart(Request, tag="call.start", frozen=True):
    """Call the conversation (every member of a direct chat or small group rings), or take part
    in its live call if it has one."""

    conv: Id
    media: Media


class CallJoin(Request, tag="call.join", frozen=True):
    """Answer a call, or join one in progress."""

    call: Id


class CallDecline(Request, tag="call.decline", frozen=True):
    call: Id


class CallLeave(Request, tag="call.leave", frozen=True):
    call: Id


class CallEnd(Request, tag="call.end", frozen=True):
    call: Id


class CallSettingsUpdate(Request, tag="call.settings", frozen=True):
    """A conversation's call settings; an absent field stays as it is, null returns to the
    instance's default."""

    conv: Id
    enabled: bool | Unset = UNSET
    max_participants: Annotated[int, Meta(ge=2, le=L.MAX_CALL_PARTICIPANTS)] | None | Unset = UNSET
    max_video_subscriptions: Annotated[int, Meta(ge=0, le=L.MAX_CALL_VIDEO_SUBSCRIPTIONS)] | None | Unset = UNSET


class CallRingTimeout(Request, tag="call.ring_timeout", frozen=True):
    """The calls role's: the ring timer of `call` fired (never sent by clients)."""

    call: Id


class CallReconcile(Request, tag="call.reconcile", frozen=True):
    """The calls role's: LiveKit reported `event` about a call's room (never sent by clients)."""

    event: RoomEvent


class CallRemove(Request, tag="call.remove", frozen=True):
    """Instance staff's: `user`'s account was suspended, so it is taken out of `call` (never sent
    by clients: the admin API sends it for each live call of the user it suspends)."""

    call: Id
    user: Id


AnyRequest = Union[
    Hello, Ping, Auth, ConvCreate, ConvJoin, ConvLeave, ConvInvite, ConvList, ConvUpdate,
    Send, Edit, Delete, React, Read, Typing, PresenceGet, History, Sync,
    MemberRole, MemberMute, MemberUnmute, MemberKick, MemberBan, MemberUnban, Pin, UserBlock, UserUnblock,
    ConvMembers, ConvSanctions, Received, Receipts, InviteAccept, InviteDecline, InviteList,
    CallStart, CallJoin, CallDecline, CallLeave, CallEnd, CallSettingsUpdate,
]

#: Moderation requests that act on one member of a conversation.
MemberAction = Union[MemberRole, MemberMute, MemberUnmute, MemberKick, MemberBan, MemberUnban]
#: Requests chat_core decides (they go through the command log); the rest the gateway answers.
WriteRequest = Union[ConvCreate, ConvJoin, ConvLeave, ConvInvite, ConvUpdate, Send, Edit, Delete, React, Read,
                     MemberRole, MemberMute, MemberUnmute, MemberKick, MemberBan, MemberUnban, Pin,
                     UserBlock, UserUnblock, Received, InviteAccept, InviteDecline,
                     CallStart, CallJoin, CallDecline, CallLeave, CallEnd, CallSettingsUpdate,
                     CallRingTimeout, CallReconcile, CallRemove]
_WRITE_TYPES = get_args(WriteRequest)


def is_write(req: AnyRequest) -> TypeGuard[WriteRequest]:
    return isinstance(req, _WRITE_TYPES)


_decoder = msgspec.json.Decoder(AnyRequest)


class FrameError(Exception):
    """A frame that cannot be answered normally; `rid` is echoed when the frame had a usable one."""

    def __init__(self, error: ParleyError, rid: str | None) -> None:
        super().__init__(error.message)
        self.error = error
        self.rid = rid


def _salvage_rid(data: bytes | str) -> str | None:
    """The frame's rid, if a lenient reading finds a usable one. The standard library's parser
    also reads what msgspec refuses (lone surrogate escapes, NaN), so such a frame's refusal
    still carries its rid; a rid that cannot be encoded back (itself a lone surrogate) is not."""
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):  # not JSON even so, or absurdly deep
        return None
    rid = obj.get("rid") if isinstance(obj, dict) else None
    if not isinstance(rid, str) or not 0 < len(rid) <= L.MAX_RID_CHARS:
        return None
    try:
        rid.encode()
    except UnicodeEncodeError:
        return None
    return rid


def decode_request(data: bytes | str, max_text_chars: int) -> AnyRequest:
    """Decode and check one client frame; raise FrameError on anything malformed."""
    try:
        req = _decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise FrameError(BadRequest(str(exc)), _salvage_rid(data)) from None
    except msgspec.DecodeError as exc:
        raise FrameError(BadRequest(f"frame is not a JSON object: {exc}"), _salvage_rid(data)) from None
    except RecursionError:
        # msgspec stops at the interpreter's recursion limit (about 1,000 levels); no request
        # nests more than a few, so this is hostile input, not a server fault.
        raise FrameError(BadRequest("frame nests too deeply"), None) from None
    try:
        check_request(req, max_text_chars)
    except ParleyError as exc:
        raise FrameError(exc, req.rid) from None
    return req


def check_request(req: AnyRequest, max_text_chars: int) -> None:
    """The shape rules msgspec cannot express. Pure; raises BadRequest or TooLarge."""
    if isinstance(req, Send) and req.cmid.startswith(_CALL_RECORD_CMID):
        raise BadRequest(f"cmids starting with {_CALL_RECORD_CMID!r} are the server's (call records)")
    if isinstance(req, (Send, Edit)):
        if len(req.text) > max_text_chars:
            raise TooLarge(f"text is longer than {max_text_chars} characters")
        # A message may be attachments alone (a photo without a caption); an edit may not empty one.
        if not req.text.strip() and not (isinstance(req, Send) and req.attachments):
            raise BadRequest("text must not be empty")
    if isinstance(req, React) and not emoji.is_emoji(req.emoji):
        raise BadRequest("a reaction is one emoji (Unicode's emoji list), not text")
    if isinstance(req, History) and req.before is not None and req.after is not None:
        raise BadRequest("give at most one of `before` and `after`")
    if isinstance(req, ConvCreate):
        if req.kind == "direct":
            if len(req.members) != 1:
                raise BadRequest("a direct conversation takes exactly one member")
            if req.password is not None or req.visibility != "private":
                raise BadRequest("a direct conversation is private and has no password")
        if req.password is not None and req.visibility != "public":
            raise BadRequest("only public conversations take a password")
    if isinstance(req, (ConvUpdate, CallSettingsUpdate)) and all(
            getattr(req, f) is UNSET for f in req.__struct_fields__ if f not in ("rid", "conv")):
        raise BadRequest(f"{req.__struct_config__.tag} changes nothing: give at least one setting")


# ---- wire objects the server sends -------------------------------------------------------


class Message(msgspec.Struct, kw_only=True):
    """The message object of docs/protocol.md; also the stored row (reactions assembled on read)."""

    conv: str
    seq: int
    sender: str
    ts: int
    cmid: str
    text: str | None
    reply_to: int | None = None
    attachments: list[str] = []
    mentions: list[str] = []
    reactions: dict[str, list[str]] = {}
    edited_at: int | None = None
    deleted: bool = False
    #: "text", or "call": the record of a finished call (`call`), written by the server.
    kind: Literal["text", "call"] = "text"
    call: CallRecord | None = None


class ConvView(msgspec.Struct, kw_only=True):
    """The `conv` object of docs/protocol.md, as seen by one user."""

    id: str
    kind: str
    title: str | None
    visibility: str
    has_password: bool
    history: str
    owner: str
    created_at: int
    last_seq: int
    read_seq: int
    unread: int
    role: str | None
    #: `direct` only: the other participant (so a client can name the conversation).
    peer: str | None = None
    #: Groups and channels: one line about the conversation, shown under its title (null: none).
    topic: str | None = None
    slow_mode_s: int = 0
    read_only: bool = False
    allow_guests: bool = False
    #: The conversation's permission overrides (permission -> lowest role); {} = the defaults.
    permissions: dict[str, str] = {}
    #: Pinned message seqs, oldest pin first.
    pinned: list[int] = []


_encoder = msgspec.json.Encoder()
encode = _encoder.encode


def error_frame(err: ParleyError, rid: str | None = None) -> bytes:
    frame: dict[str, Any] = {"op": "error"}
    if rid is not None:
        frame["rid"] = rid
    frame["code"] = err.code
    frame["message"] = err.message
    if err.rule is not None:
        frame["rule"] = err.rule
    if err.retry_after_ms is not None:
        frame["retry_after_ms"] = err.retry_after_ms
    return encode(frame)
