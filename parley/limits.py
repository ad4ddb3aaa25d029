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
MAX_MEMBERS_PER_REQUEST = 1000
#: Users one `presence` request may ask about.
PRESENCE_QUERY_MAX = 200
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
#: Bytes of frames queued for one session whose socket backed up, before `resync` and close
#: 4008 (Centrifugo's default is the same). A reader that stops reading holds at most this,
#: plus the socket's own buffer (64 KiB) and one frame larger than the bound.
SEND_QUEUE_MAX_BYTES = 1024 * 1024
#: Live sessions of one user on one gateway; another `hello` is refused (close 4029).
MAX_SESSIONS_PER_USER = 10
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


class Limits(msgspec.Struct, frozen=True):
    """Operator-tunable limits; `hello` and /v1/client/capabilities publish them."""

    max_frame_bytes: int = 65536
    max_text_chars: int = 16384
    history_max: int = HISTORY_MAX
    heartbeat_s: int = 30
    hello_timeout_s: float = 10.0
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
    #: On SIGTERM, how long sessions told 4009 may take to flush (and, in `parley dev`, the
    #: commands already taken to be processed) before the server closes what is left.
    drain_timeout_s: float = 5.0

    def mime_allowed(self, mime: str) -> bool:
        return any(mime == m or (m.endswith("/") and mime.startswith(m)) for m in self.upload_mime)

    def public(self) -> dict[str, int]:
        """The subset clients see in `hello`."""
        return {
            "max_frame_bytes": self.max_frame_bytes,
            "max_text_chars": self.max_text_chars,
            "history_max": self.history_max,
        }
