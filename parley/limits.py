"""Every protocol limit and its default, in one place (docs/protocol.md lists them)."""

from __future__ import annotations

import msgspec

#: Hard ceiling of `history`/`limit`; the protocol fixes it at 200.
HISTORY_MAX = 200
HISTORY_DEFAULT = 50
#: Messages returned per conversation by `sync` before `more: true`.
SYNC_PAGE = 50
#: Longest client-chosen strings we store or echo (rid, cmid, device id, emoji, title).
MAX_RID_CHARS = 64
MAX_CMID_CHARS = 64
MAX_DEVICE_ID_CHARS = 64
MAX_EMOJI_CHARS = 32
MAX_TITLE_CHARS = 256
#: A group's or channel's topic (`conv.update`): one line shown under its title.
MAX_TOPIC_CHARS = 250
MAX_MEMBERS_PER_REQUEST = 1000
#: Users one `presence` request may ask about.
PRESENCE_QUERY_MAX = 200
#: A page of `conv.members`, and the profiles one `conv.list` answer carries at most.
MEMBERS_PAGE_MAX = 200
CONV_LIST_PROFILES_MAX = 200
#: Characters of a conversation list's preview of its last message.
PREVIEW_CHARS = 140
#: The default of Limits.receipts_max_members (PARLEY_RECEIPTS_MAX_MEMBERS).
RECEIPTS_MAX_MEMBERS = 32
#: How long a gateway gathers `received` acknowledgements before it sends them on, one
#: command per conversation and user.
RECEIVED_FLUSH_S = 0.5
#: Presence is shared in direct chats and groups up to this size (not channels, not crowds).
PRESENCE_MAX_MEMBERS = 256
ROOM_PASSWORD_MAX_CHARS = 256
#: Attachments one `send` may carry, and the longest file name an upload may declare.
MAX_ATTACHMENTS_PER_MESSAGE = 10
MAX_ATTACHMENT_NAME_CHARS = 255
#: Lifetime of a presigned upload URL (it writes an object once) and, by default, of a presigned
#: download URL (one handed out works until it expires, whatever happens to membership).
UPLOAD_URL_TTL_S = 15 * 60
DOWNLOAD_URL_TTL_S = 60
#: MIME types an upload may declare by default; an entry ending in "/" admits the whole type.
#: No text/html or image/svg+xml: they run script when a browser opens them.
UPLOAD_MIME_DEFAULT = (
    "image/png", "image/jpeg", "image/gif", "image/webp", "image/heic", "audio/", "video/",
    "application/pdf", "application/zip", "application/octet-stream", "text/plain",
)
#: Login attempts per username (right or wrong) within the window; a successful login clears
#: the count, so only guessing reaches it. Over it, every attempt is refused before the hash.
LOGIN_ATTEMPTS, LOGIN_WINDOW_S = 10, 300
#: How long the revocation log keeps an entry: gateways read the last seconds of it, or, after
#: losing the store for a while, as far back as they were last up to date.
REVOCATION_LOG_KEEP_S = 3600
#: Bytes of frames queued for one session whose socket backed up, before `resync` and close
#: 4008 (Centrifugo's default is the same). A reader that stops reading holds at most this,
#: plus the socket's own buffer (64 KiB) and one frame larger than the bound.
SEND_QUEUE_MAX_BYTES = 1024 * 1024
#: Live sessions of one user on one gateway; another `hello` is refused (close 4029).
MAX_SESSIONS_PER_USER = 10
#: WebSockets of one client address that have not said hello yet, on one gateway; more are
#: refused before the upgrade (HTTP 429). Only handshakes count, not live sessions: a proxy or a
#: load generator's worker holds thousands of sessions from one address, and connects them fast.
MAX_HANDSHAKES_PER_IP = 256
#: A session told to close whose peer has not taken the close frame within this time (it stopped
#: reading) has its connection cut, and its buffers freed.
CLOSE_GRACE_S = 10.0
#: Moderation: a reason's length, the longest timed mute or ban (a year), slow mode, pins.
MAX_REASON_CHARS = 512
MAX_SANCTION_S = 366 * 24 * 3600
MAX_SLOW_MODE_S = 24 * 3600
MAX_PINS = 50
#: The most a conversation's call settings may say: participants per call, and video tracks a
#: client subscribes to (the instance's defaults are settings: PARLEY_CALL_MAX_*).
MAX_CALL_PARTICIPANTS = 1000
MAX_CALL_VIDEO_SUBSCRIPTIONS = 100

#: Every request's per-user rate limit, by family: op -> the name of its `Limits` pair
#: (`<name>_burst` per `<name>_window_s`). One table for every op but `hello` and `ping`: an op
#: missing here fails the gateway's start.
RATES: dict[str, str] = {
    "send": "send",
    "edit": "edit",
    "delete": "delete",
    "react": "react", "pin": "settings",
    "read": "read",
    "conv.create": "create",
    "conv.invite": "invite",
    "conv.join": "membership", "conv.leave": "membership", "invite.accept": "membership",
    "invite.decline": "membership",
    "conv.update": "settings",
    "member.role": "moderation", "member.mute": "moderation", "member.unmute": "moderation",
    "member.kick": "moderation", "member.ban": "moderation", "member.unban": "moderation",
    "user.block": "block", "user.unblock": "block",
    "call.start": "call", "call.join": "call", "call.decline": "call", "call.leave": "call", "call.end": "call",
    "call.settings": "settings",
    # reads: each costs the store a query (typing only when it is not dropped: a membership check)
    "history": "fetch", "sync": "fetch", "conv.list": "fetch", "invite.list": "fetch", "presence": "fetch",
    "typing": "fetch", "conv.members": "fetch", "receipts": "fetch", "conv.sanctions": "fetch",
    # a live session's new access token: a signature check and a read of the login
    "auth": "fetch",
}


class Limits(msgspec.Struct, frozen=True):
    """Operator-tunable limits; `hello` and /v1/client/capabilities publish them."""

    max_frame_bytes: int = 65536
    max_text_chars: int = 16384
    history_max: int = HISTORY_MAX
    heartbeat_s: int = 30
    #: A WebSocket that has not sent hello within this many seconds is closed 4001.
    hello_timeout_s: float = 10.0
    #: WebSockets before hello per client address on one gateway (0: no cap).
    max_handshakes_per_ip: int = MAX_HANDSHAKES_PER_IP
    #: Events queued for one session before it gets `resync` and close 4008; and their bytes.
    send_queue_max: int = 2048
    send_queue_max_bytes: int = SEND_QUEUE_MAX_BYTES
    #: Live sessions per user on one gateway.
    max_sessions_per_user: int = MAX_SESSIONS_PER_USER
    #: Requests of one session awaiting their reply before `rate_limited`.
    inflight_max: int = 512
    #: Sends per user: `send_burst` within `send_window_s` (100 per 5 s = 20/s sustained, bursts of 100).
    send_burst: int = 100
    send_window_s: int = 5
    #: The other writes per user, one pair per family of RATES. Edits bound what one user
    #: pushes to every member besides sends (each edit carries the whole message again).
    edit_burst: int = 20
    edit_window_s: int = 60
    delete_burst: int = 60
    delete_window_s: int = 60
    react_burst: int = 60
    react_window_s: int = 60
    #: Read receipts: generous, clients send one as messages scroll by.
    read_burst: int = 300
    read_window_s: int = 60
    #: conv.create (groups, channels, direct chats opened) and conv.invite requests.
    create_burst: int = 20
    create_window_s: int = 600
    invite_burst: int = 30
    invite_window_s: int = 600
    #: conv.join, conv.leave, invite.accept and invite.decline.
    membership_burst: int = 30
    membership_window_s: int = 60
    #: conv.update and pin.
    settings_burst: int = 30
    settings_window_s: int = 60
    #: member.role, mute, unmute, kick, ban, unban: moderators act in bursts during a raid.
    moderation_burst: int = 60
    moderation_window_s: int = 60
    block_burst: int = 30
    block_window_s: int = 60
    #: call.start, join, decline, leave, end: each rings, or reaches LiveKit through a token.
    call_burst: int = 60
    call_window_s: int = 60
    #: Reads (history, sync, conv.list, invite.list, presence, typing's membership check): a
    #: client catching up after a long absence pages many histories at once.
    fetch_burst: int = 600
    fetch_window_s: int = 60
    #: A session's typing signals fan out at most once per conversation per this many seconds;
    #: the others are answered `ok` and dropped (clients repeat typing while the user types).
    typing_interval_s: float = 3.0
    #: Distinct reactions (emoji) on one message, and reactions of one user on one message
    #: (Discord's 20; Telegram's 3 per user for Premium): a message and its every copy stay small.
    max_reactions_per_message: int = 20
    max_reactions_per_user: int = 3
    #: Edits of one message: each edit sends the whole message to every member again.
    max_edits_per_message: int = 50
    #: conv.join with a password, per user and per room, counted before any hashing: every
    #: attempt counts, right or wrong.
    room_password_burst: int = 10
    room_password_window_s: int = 60
    room_password_room_burst: int = 60
    room_password_room_window_s: int = 60
    #: Threads of one gateway hashing and checking room passwords (argon2), and the checks that
    #: may wait for them before more are answered `rate_limited`.
    password_threads: int = 2
    password_queue_max: int = 64
    #: A command not answered by chat_core within this many seconds is answered `unavailable`.
    command_timeout_s: float = 10.0
    #: Largest attachment an upload may declare (25 MiB).
    max_upload_bytes: int = 25 * 1024 * 1024
    #: MIME types (or "type/" prefixes) an upload may declare.
    upload_mime: tuple[str, ...] = UPLOAD_MIME_DEFAULT
    #: Lifetime of the download URL of `GET /v1/attachments/{id}`.
    download_url_ttl_s: int = DOWNLOAD_URL_TTL_S
    #: Guests send less: `guest_send_burst` per `guest_send_window_s`.
    guest_send_burst: int = 10
    guest_send_window_s: int = 10
    #: Per client IP, on register, login and guest tokens (spam control); 0 turns it off.
    ip_auth_burst: int = 100
    ip_auth_window_s: int = 60
    #: Reports per user.
    report_burst: int = 10
    report_window_s: int = 60
    #: Upload declarations (POST /v1/uploads) per user: each stores a row and signs a URL.
    upload_burst: int = 30
    upload_window_s: int = 60
    #: Data exports (GET /v1/me/export) per user: each reads everything the user sent.
    export_burst: int = 5
    export_window_s: int = 3600
    #: Directory searches (GET /v1/users?q=) per user: each is a range read, and enumeration costs.
    directory_burst: int = 30
    directory_window_s: int = 60
    #: Profile changes (PATCH /v1/me/profile, PUT /v1/me/avatar) per user: each is an
    #: event to everyone who shares a conversation with them.
    profile_burst: int = 10
    profile_window_s: int = 60
    #: Largest avatar image accepted (PUT /v1/me/avatar).
    max_avatar_bytes: int = 5 * 1024 * 1024
    #: Conversations of at most this many members get a `delivered` event per member and answer
    #: `receipts` per member; larger ones answer counts (docs/protocol.md, Delivered and read).
    receipts_max_members: int = RECEIPTS_MAX_MEMBERS
    #: On SIGTERM, how long sessions told 4009 may take to flush (and, in `parley dev`, the
    #: commands already taken to be processed) before the server closes what is left.
    drain_timeout_s: float = 5.0

    def rate(self, name: str) -> tuple[int, int]:
        """The (burst, window_s) pair called `name`."""
        return getattr(self, f"{name}_burst"), getattr(self, f"{name}_window_s")

    def mime_allowed(self, mime: str) -> bool:
        return any(mime == m or (m.endswith("/") and mime.startswith(m)) for m in self.upload_mime)

    def public(self) -> dict[str, int]:
        """The subset clients see in `hello`."""
        return {
            "max_frame_bytes": self.max_frame_bytes,
            "max_text_chars": self.max_text_chars,
            "history_max": self.history_max,
        }
