"""What flows between the stages: commands (gateway -> chat_core), store mutations, and event
records (chat_core -> outbox -> delivery -> gateway). Plain data; every stage and adapter shares it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

import msgspec

from parley.frames import CallState, ConvView, EndReason, Media, Message, WriteRequest


class EdgeFacts(msgspec.Struct, array_like=True, frozen=True):
    """What the gateway established before publishing a write, so that the conversation's single
    writer never waits for it: work too slow for the writer's loop (argon2) or reads beyond the
    conversation. The writer decides with these facts; it trusts them as it trusts the log."""

    #: conv.create and conv.update: the new room password's argon2 hash (the plaintext never
    #: enters the log). conv.join: the stored hash the given password matched; the writer admits
    #: the join only while the room's hash is still this one.
    password_hash: str | None = None
    #: conv.create and conv.invite: the "who may add me" choice of the named users who made one
    #: other than WHO_MAY_ADD_DEFAULT, and those of them who share a conversation with the actor
    #: (their contacts: gateway/contacts.py).
    who_may_add: dict[str, str] = {}
    contacts: list[str] = []
    #: Calls: the actor's device (its `hello` device id, else its session): calls tell devices apart.
    device: str | None = None


class Command(msgspec.Struct, array_like=True, frozen=True):
    """One client write, keyed by conversation: the unit of the command log."""

    conv: str
    user: str
    gateway: str
    session: str
    body: WriteRequest
    #: The actor's instance role from its token ("admin", "moderator"; None for everyone else).
    instance_role: str | None = None
    #: The actor holds a guest token (no password, short-lived): chat_core lets guests join only
    #: public conversations that allow guests.
    guest: bool = False
    #: Stage timestamps (parley.hops): where its time goes.
    t_ns: list[int] = []
    #: What the gateway checked for the writer (None for most writes).
    edge: EdgeFacts | None = None
    #: W3C traceparent of the span that published it (parley.tracing); None while tracing is off.
    trace: str | None = None


class EventRecord(msgspec.Struct, array_like=True, frozen=True):
    """One event, encoded once: `frame` is written as-is to every recipient's socket."""

    conv: str
    frame: bytes
    #: Explicit recipients; None means every member of `conv` at delivery time.
    to: list[str] | None = None
    #: Recipients besides the members (someone who just left must still hear it).
    also: list[str] | None = None
    #: The member list of `conv` changed: delivery drops its cached copy.
    members_changed: bool = False
    #: Stage timestamps (parley.hops), from its command's.
    t_ns: list[int] = []
    #: W3C traceparent of the span it continues (parley.tracing): stored with the outbox row, so
    #: a relay replaying it after a crash continues its trace. None while tracing is off (and in
    #: rows stored before the field existed).
    trace: str | None = None


# ---- stored state -------------------------------------------------------------------------


class ConvRow(msgspec.Struct, kw_only=True):
    id: str
    kind: str
    title: str | None
    visibility: str
    password_hash: str | None
    history: str
    owner: str
    created_at: int
    last_seq: int = 0
    #: One line about a group or channel (conv.update); None: none.
    topic: str | None = None
    #: Moderation settings (conv.update) and pins.
    slow_mode_s: int = 0
    read_only: bool = False
    #: A public conversation guests (POST /v1/auth/guest) may join.
    allow_guests: bool = False
    #: Permission overrides: permission name -> lowest role (moderation/policy.py).
    permissions: dict[str, str] = {}
    pinned: list[int] = []


class MemberRow(msgspec.Struct, kw_only=True):
    conv: str
    user: str
    role: str
    #: First seq this member may read (membership-bound history).
    visible_from: int
    read_seq: int
    joined_at: int
    #: The highest seq one of this member's devices acknowledged receiving (`received`); reading
    #: implies receiving, so what counts is max(delivered_seq, read_seq).
    delivered_seq: int = 0


class AttachmentRow(msgspec.Struct, kw_only=True):
    """A file a member declared for a conversation; its bytes live behind the Attachments port
    under the key `id`. `uploaded` turns true once the server has seen the bytes."""

    id: str
    conv: str
    uploader: str
    name: str
    mime: str
    size: int
    created_at: int
    uploaded: bool = False
    #: Images (parley/thumbnails.py), once uploaded: the upright size, and the longest sides of
    #: the thumbnails stored beside the object (under `thumbnail_key(id, size)`); none otherwise.
    width: int | None = None
    height: int | None = None
    thumbs: list[int] = []


class SanctionRow(msgspec.Struct, kw_only=True):
    """A mute or a ban of one user in one conversation. Bans outlive membership (they are what
    keeps a user out); so do mutes, so leaving and rejoining does not lift one."""

    conv: str
    user: str
    kind: str  # "mute" | "ban"
    until: int  # ms since the epoch; moderation.policy.FOREVER when it has no end
    by: str  # a user id, or "system"
    at: int
    reason: str | None = None


class RoomSession(msgspec.Struct, frozen=True, array_like=True, order=True):
    """One device's connection to a call's LiveKit room; `sid` is LiveKit's participant sid,
    new on every (re)connection, which tells a late webhook of an old connection from a new one."""

    user: str
    device: str
    sid: str


class Call(msgspec.Struct, frozen=True, kw_only=True):
    """A call as its conversation's writer stores it; calls/state.py decides its transitions."""

    id: str
    conv: str
    media: Media
    initiator: str
    #: A call of a direct conversation ends when either side leaves, as a phone call does.
    direct: bool
    #: Users at most in the call at once: the conversation's override, or the instance default.
    max_participants: int
    state: CallState
    started_at: int
    ring_deadline: int
    #: Callees rung at the start (never the initiator).
    invited: frozenset[str] = frozenset()
    #: Callees whose devices ring now.
    ringing: frozenset[str] = frozenset()
    #: Users who answered or joined (ever; those who left since are also in `left`).
    accepted: frozenset[str] = frozenset()
    declined: frozenset[str] = frozenset()
    busy: frozenset[str] = frozenset()
    left: frozenset[str] = frozenset()
    #: Users removed by moderation (kicked or banned mid-call): never let back into this call.
    removed: frozenset[str] = frozenset()
    present: frozenset[RoomSession] = frozenset()
    #: Users announced in the room (`call.joined` sent, no `call.left` since). A session replaced
    #: by a reconnection keeps its user here until the new one arrives.
    in_room: frozenset[str] = frozenset()
    #: Sessions that have left the room: a join webhook for one of them arrives late, ignore it.
    gone: frozenset[str] = frozenset()
    #: Present sessions the last sweep of the room did not find (RoomListed): the next one that
    #: does not find them either takes them out. Twice, because a listing may predate a join.
    unseen: frozenset[str] = frozenset()
    answered_at: int | None = None
    ended_at: int | None = None
    end_reason: EndReason | None = None

    @property
    def in_call(self) -> frozenset[str]:
        """Users taking part now: the initiator and those who answered, less those who left."""
        return (self.accepted | {self.initiator}) - self.left

    @property
    def live(self) -> bool:
        return self.state is not CallState.ENDED

    @property
    def duration(self) -> int:
        """Milliseconds from the answer to the end: 0 until the call ends, and for one nobody answered."""
        if self.answered_at is None or self.ended_at is None:
            return 0
        return self.ended_at - self.answered_at


class RoomWork(msgspec.Struct, frozen=True, kw_only=True, tag="call.room", tag_field="type"):
    """What the calls role does in a call's LiveKit room for its writer: put sessions out of it,
    close it. It rides the outbox as an EventRecord addressed to nobody (`to=[]`), so it is as
    durable as the decision that made it; only the calls role reads it."""

    call: str
    remove: tuple[RoomSession, ...] = ()
    close: bool = False


class CallSettings(msgspec.Struct, frozen=True, kw_only=True):
    """A conversation's call settings (`call.settings`); None: the instance's default."""

    enabled: bool = True
    max_participants: int | None = None
    max_video_subscriptions: int | None = None


class InvitationRow(msgspec.Struct, kw_only=True):
    """An invitation to a conversation, pending until its invitee accepts or declines it: how
    someone is brought in whose choice does not let the inviter add them directly."""

    conv: str
    user: str
    by: str
    at: int  # ms since the epoch


@dataclass(slots=True)
class Flood:
    """The last text a member sent (by hash) and how often in a row, for duplicate-flood checks."""

    text_hash: int
    count: int
    since: int


@dataclass(slots=True)
class ConvState:
    """A conversation as its single writer holds it: the row, its members by user id, and the
    moderation state its decisions need."""

    row: ConvRow
    members: dict[str, MemberRow]
    mutes: dict[str, SanctionRow] = field(default_factory=dict)
    bans: dict[str, SanctionRow] = field(default_factory=dict)
    #: Pending invitations by invitee.
    invitations: dict[str, InvitationRow] = field(default_factory=dict)
    #: Direct conversations: (blocker, blocked) pairs between the two members. This writer is
    #: the only one that changes them (user.block goes to the pair's direct conversation).
    blocks: set[tuple[str, str]] = field(default_factory=set)
    #: Not stored: the last send time per member (slow mode) and repeated texts (flood). A
    #: restart forgets them, which costs at most one extra message per member.
    last_sent: dict[str, int] = field(default_factory=dict)
    floods: dict[str, Flood] = field(default_factory=dict)
    #: The conversation's live call, if any (ended calls are read by id: `Needs.calls`).
    call: Call | None = None
    call_settings: CallSettings = field(default_factory=CallSettings)

    def view(self, user: str) -> ConvView:
        peer = None
        if self.row.kind == "direct":
            peer = next((u for u in self.members if u != user), None)
        return conv_view(self.row, self.members.get(user), peer)


# ---- mutations: what chat_core asks the store to write, in one transaction ----------------


class CreateConv(msgspec.Struct, tag=True):
    row: ConvRow


class SetConvHead(msgspec.Struct, tag=True):
    conv: str
    last_seq: int


class SetConvOwner(msgspec.Struct, tag=True):
    conv: str
    owner: str


class PutMember(msgspec.Struct, tag=True):
    row: MemberRow


class DropMember(msgspec.Struct, tag=True):
    conv: str
    user: str


class SetReadSeq(msgspec.Struct, tag=True):
    conv: str
    user: str
    read_seq: int


class SetDeliveredSeq(msgspec.Struct, tag=True):
    """Moves a member's delivered cursor forward (never back: the store keeps the larger)."""

    conv: str
    user: str
    delivered_seq: int


class InsertMessage(msgspec.Struct, tag=True):
    message: Message


class UpdateMessage(msgspec.Struct, tag=True):
    """An edit (text, edited_at) or a delete (tombstone: text None, attachments cleared)."""

    conv: str
    seq: int
    text: str | None
    edited_at: int | None
    deleted: bool
    #: An edit: the message's edits so far, this one included (a delete keeps the stored count).
    edits: int = 0


class SetReaction(msgspec.Struct, tag=True):
    conv: str
    seq: int
    emoji: str
    user: str
    on: bool


class UpdateConv(msgspec.Struct, tag=True):
    """The settings of `row` (title, topic, visibility, password, history, slow mode, read-only,
    permissions, pins); not its head or owner, which have their own mutations."""

    row: ConvRow


class PutSanction(msgspec.Struct, tag=True):
    row: SanctionRow


class DropSanction(msgspec.Struct, tag=True):
    conv: str
    user: str
    kind: str


class PutBlock(msgspec.Struct, tag=True):
    blocker: str
    blocked: str
    at: int


class DropBlock(msgspec.Struct, tag=True):
    blocker: str
    blocked: str


class PutInvitation(msgspec.Struct, tag=True):
    row: InvitationRow


class DropInvitation(msgspec.Struct, tag=True):
    conv: str
    user: str


class PutOutbox(msgspec.Struct, tag=True):
    record: EventRecord
    #: The log partition of `record.conv`: each shard's relay checkpoint has one owner.
    shard: int = 0


class AuditEntry(msgspec.Struct, kw_only=True, frozen=True):
    """One line of the append-only audit log: who did what to whom, and why."""

    at: int  # ms since the epoch
    actor: str  # a user id, or "system" for automatic actions
    action: str  # e.g. "member.mute", "user.suspend"
    target: str  # a user id, conversation id or "<conv>/<seq>"
    conv: str | None = None
    reason: str | None = None
    details: dict[str, str | int | bool | None] = {}
    #: Assigned by the store on append; increases with append order.
    id: int = 0


class AuditQuery(msgspec.Struct, kw_only=True, frozen=True):
    actor: str | None = None
    target: str | None = None
    action: str | None = None
    since: int | None = None  # at >= since
    until: int | None = None  # at < until
    before_id: int | None = None  # paging: entries older than this id
    limit: int = 100


# ---- accounts, invites, reports, instance policy (the gateway and the admin API write these) --

#: `Account.suspended_until` of an indefinite suspension (the largest integer JSON keeps exact).
SUSPENDED_FOREVER = 2**53 - 1
#: Who may put a user into a conversation directly (everyone else invites them): anyone, their
#: contacts (people they share a direct chat or a small group with), or nobody.
WHO_MAY_ADD = ("anyone", "contacts", "nobody")
#: A user who chose nothing: Telegram's default (Matrix invites everyone, always).
WHO_MAY_ADD_DEFAULT = "anyone"


class Account(msgspec.Struct, kw_only=True):
    """A user's account row, without the password hash."""

    id: str
    username: str
    created_at: int  # ms since the epoch
    #: Instance role: "admin", "moderator", or None (everyone else).
    role: str | None = None
    #: "active", "pending" (awaiting a moderator's approval), "rejected", or "deleted" (anonymized).
    status: str = "active"
    #: ms since the epoch; None = not suspended. Suspended while `suspended_until > now`.
    suspended_until: int | None = None
    suspend_reason: str | None = None
    guest: bool = False
    #: Tokens carry the generation they were issued in; bumping it refuses every older token.
    token_gen: int = 0
    #: The profile (parley/profiles.py): a name to show, the avatar's version (its images are
    #: stored under keys made from it), a short status line, and whether the directory lists them.
    display_name: str | None = None
    avatar: str | None = None
    status_text: str | None = None
    discoverable: bool = True
    #: Who may add this user to a conversation directly (WHO_MAY_ADD).
    who_may_add: str = WHO_MAY_ADD_DEFAULT


class AccountPatch(msgspec.Struct, kw_only=True, frozen=True):
    """Fields of an account to change; UNSET ones stay as they are."""

    username: str | msgspec.UnsetType = msgspec.UNSET
    role: str | None | msgspec.UnsetType = msgspec.UNSET
    status: str | msgspec.UnsetType = msgspec.UNSET
    suspended_until: int | None | msgspec.UnsetType = msgspec.UNSET
    suspend_reason: str | None | msgspec.UnsetType = msgspec.UNSET
    password_hash: str | msgspec.UnsetType = msgspec.UNSET
    display_name: str | None | msgspec.UnsetType = msgspec.UNSET
    avatar: str | None | msgspec.UnsetType = msgspec.UNSET
    status_text: str | None | msgspec.UnsetType = msgspec.UNSET
    discoverable: bool | msgspec.UnsetType = msgspec.UNSET
    who_may_add: str | msgspec.UnsetType = msgspec.UNSET
    #: Increment `token_gen`: every token issued before is refused from now on.
    cut_sessions: bool = False


class AccountQuery(msgspec.Struct, kw_only=True, frozen=True):
    """Search: a username prefix (or an exact user id), status, role; paged by username."""

    prefix: str | None = None
    status: str | None = None
    role: str | None = None
    guest: bool | None = None
    after: str | None = None  # paging: usernames after this one
    limit: int = 50


class Invite(msgspec.Struct, kw_only=True):
    """A single-use registration code."""

    code: str
    created_by: str
    created_at: int
    expires_at: int | None = None
    used_by: str | None = None
    used_at: int | None = None


class Report(msgspec.Struct, kw_only=True):
    """A member's report of a message (`conv`, `seq`) or of a user, and its place in the queue."""

    id: int = 0  # assigned by the store
    at: int
    reporter: str
    kind: str  # "message" | "user"
    target_user: str  # the reported user, or the message's sender
    conv: str | None = None
    seq: int | None = None
    reason: str
    #: The reported message's text when it was reported (evidence that outlives an edit).
    excerpt: str | None = None
    status: str = "open"  # "open" | "claimed" | "resolved"
    claimed_by: str | None = None
    claimed_at: int | None = None
    resolved_by: str | None = None
    resolved_at: int | None = None
    resolution: str | None = None  # the action taken, e.g. "dismiss", "delete_message"
    note: str | None = None


class ReportQuery(msgspec.Struct, kw_only=True, frozen=True):
    status: str | None = None
    claimed_by: str | None = None
    target_user: str | None = None
    before_id: int | None = None  # paging: reports older than this id
    limit: int = 50


class SessionFamily(msgspec.Struct, kw_only=True):
    """One login (a "session" in the user's list of their sessions): the access tokens it issues
    name it, and its refresh tokens replace one another until it is revoked or expires."""

    id: str
    user_id: str
    created_at: int  # ms since the epoch
    #: The login or the latest refresh.
    last_used_at: int
    #: When its newest refresh token expires: every refresh moves it (an idle login ends).
    expires_at: int
    #: What the client called itself at login (`device_name`), or its User-Agent.
    label: str
    #: The account's token generation at login: a later cut (suspension, deletion, a revoked
    #: role, "log out everywhere") ends the family with every token of that generation.
    token_gen: int
    revoked_at: int | None = None


class RefreshToken(msgspec.Struct, kw_only=True, frozen=True):
    """A refresh token as stored: its SHA-256 (the token itself is only ever with the client)."""

    hash: str
    family: str
    user_id: str
    expires_at: int
    #: When it was exchanged for its successor; a spent token coming back is a stolen copy.
    used_at: int | None = None


class Revocation(msgspec.Struct, kw_only=True, frozen=True):
    """An entry of the revocation log: the live sessions of `user_id` that it names end (close
    4003). Applying one twice changes nothing, so readers may read an entry more than once."""

    id: str
    at: int  # ms since the epoch
    user_id: str
    #: Sessions standing on a token of this login session family...
    family: str | None = None
    #: ...or on a token of an older generation than this (the account was cut).
    token_gen: int | None = None
    #: The close reason the sessions are given ("signed out", "account suspended", ...).
    reason: str


class PutAudit(msgspec.Struct, tag=True):
    entry: AuditEntry


class PutCall(msgspec.Struct, tag=True):
    """The call as it now is; while it is live it is its conversation's live call."""

    call: Call


class PutCallSettings(msgspec.Struct, tag=True):
    conv: str
    settings: CallSettings


class PutCallMember(msgspec.Struct, tag=True):
    """`user` takes part in the live call `call` of `conv` (what makes a callee busy elsewhere)."""

    user: str
    call: str
    conv: str


class DropCallMember(msgspec.Struct, tag=True):
    user: str
    call: str


Mutation = Union[
    CreateConv, SetConvHead, SetConvOwner, PutMember, DropMember, SetReadSeq,
    InsertMessage, UpdateMessage, SetReaction, PutOutbox, PutAudit,
    UpdateConv, PutSanction, DropSanction, PutBlock, DropBlock, SetDeliveredSeq, PutInvitation, DropInvitation,
    PutCall, PutCallSettings, PutCallMember, DropCallMember,
]

# ---- what chat_core needs read before it can decide a batch -------------------------------

IdemKey = tuple[str, str, str]  # (conv, sender, cmid)
MsgKey = tuple[str, int]  # (conv, seq)


@dataclass(slots=True)
class Needs:
    convs: set[str] = field(default_factory=set)
    users: set[str] = field(default_factory=set)
    idem: set[IdemKey] = field(default_factory=set)
    messages: set[MsgKey] = field(default_factory=set)
    attachments: set[str] = field(default_factory=set)
    #: Account creation times (account age rules); a subset of users needs only this.
    accounts: set[str] = field(default_factory=set)
    #: Pairs (a, b) whose blocks, either way, a decision needs.
    blocks: set[tuple[str, str]] = field(default_factory=set)
    #: Calls by id (the live call of a conversation comes with the conversation).
    calls: set[str] = field(default_factory=set)
    #: Conversations whose members' live calls, in any conversation, a decision needs (busy).
    call_members: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.convs or self.users or self.idem or self.messages or self.attachments or self.accounts
                    or self.blocks or self.calls or self.call_members)


@dataclass(slots=True)
class Facts:
    convs: dict[str, ConvState] = field(default_factory=dict)
    users: set[str] = field(default_factory=set)
    idem: dict[IdemKey, tuple[int, int]] = field(default_factory=dict)
    messages: dict[MsgKey, Message] = field(default_factory=dict)
    attachments: dict[str, AttachmentRow] = field(default_factory=dict)
    #: How often each of `Needs.messages` was edited; absent: never (a message carries no count
    #: on the wire, so it is kept beside the message).
    edits: dict[MsgKey, int] = field(default_factory=dict)
    #: users.created_at of `Needs.accounts` (and of `Needs.users` that exist).
    created_at: dict[str, int] = field(default_factory=dict)
    #: (blocker, blocked) among `Needs.blocks` pairs, either way.
    blocks: set[tuple[str, str]] = field(default_factory=set)
    #: `Needs.calls` that exist.
    calls: dict[str, Call] = field(default_factory=dict)
    #: The members of `Needs.call_members` conversations who take part in a live call: user ->
    #: the ids of those calls.
    in_calls: dict[str, set[str]] = field(default_factory=dict)


def unread_count(last_seq: int, read_seq: int, visible_from: int) -> int:
    """What a member has not read of a conversation whose newest seq is `last_seq`: what came
    after their read cursor, history before `visible_from` not being theirs to read. A push's
    badge is its sum over the member's conversations."""
    return max(0, last_seq - max(read_seq, visible_from - 1))


def conv_view(row: ConvRow, member: MemberRow | None, peer: str | None = None) -> ConvView:
    """The `conv` object for one user. Sending moves the sender's cursor, so every message after
    `read_seq` is someone else's and `unread` is a difference, not a count."""
    read_seq = member.read_seq if member else 0
    return ConvView(
        id=row.id, kind=row.kind, title=row.title, visibility=row.visibility,
        has_password=row.password_hash is not None, history=row.history, owner=row.owner,
        created_at=row.created_at, last_seq=row.last_seq, read_seq=read_seq,
        unread=max(0, row.last_seq - read_seq) if member else 0,
        role=member.role if member else None, peer=peer, topic=row.topic, slow_mode_s=row.slow_mode_s, read_only=row.read_only,
        allow_guests=row.allow_guests,
        permissions=dict(row.permissions), pinned=list(row.pinned),
    )


# ---- push: devices and notification settings ----------------------------------------------


class Device(msgspec.Struct, kw_only=True, frozen=True):
    """A phone's push token, registered by one login (session family) of one user: the login
    ending ends the device. A token is one device: registered again by another user, it moves."""

    id: str
    user_id: str
    family_id: str
    #: push.notification.Platform: fcm, apns or apns_voip.
    platform: str
    token: str
    #: The iOS bundle id or the Android package the token belongs to.
    app_id: str
    locale: str
    created_at: int


class NotifySettings(msgspec.Struct, kw_only=True, frozen=True):
    """What a user wants pushed: account-wide, or for one conversation (which then wins)."""

    #: all | mentions | none; in a direct conversation every message counts as a mention.
    level: str = "all"
    #: No pushes until this time (ms since the epoch); None: not muted.
    mute_until: int | None = None
    #: Off: a push says "New message" and nothing else.
    previews: bool = True
