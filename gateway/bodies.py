"""The shapes of the client REST API that no other module types: the account bodies, which the
auth routes read field by field (to answer the contract's 400/401 for each), the `/v1/users`
query, which its route reads by hand, and the answers the routes build as JSON objects.
gateway/openapi.py documents the API with these and the Structs the routes decode with and answer
(reports, uploads, privacy, login sessions, profiles). The schemathesis test checks every answer the
server gives against them: a route that stops sending a field, or sends it with another type,
fails it (a new field does not: clients ignore fields they do not know)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from gateway.devices import DeviceView
from parley.auth import PASSWORD_MAX, PASSWORD_MIN, USERNAME_RE
from parley.events import CallView
from parley.profiles import MAX_DIRECTORY_PREFIX, MAX_DIRECTORY_RESULTS, MIN_DIRECTORY_PREFIX, Profile
from parley.records import AttachmentRow, NotifySettings
from parley.session_families import MAX_DEVICE_NAME_CHARS, SessionView

# ---- accounts -----------------------------------------------------------------------------

DeviceName = Annotated[str, Meta(min_length=1, max_length=MAX_DEVICE_NAME_CHARS)]


class RegisterBody(msgspec.Struct, kw_only=True):
    #: Lowercased and trimmed on input; names starting with `guest-` or `deleted-`, and `system`
    #: and `cli`, are the server's own (400).
    username: Annotated[str, Meta(min_length=3, max_length=32, pattern=USERNAME_RE.pattern)]
    password: Annotated[str, Meta(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX)]
    #: Needed when the instance registers by invitation only.
    invite: str | None = None
    #: What the list of sessions shows for this login (else the client's `User-Agent`).
    device_name: DeviceName | None = None


class LoginBody(msgspec.Struct, kw_only=True):
    username: str
    password: str
    device_name: DeviceName | None = None


class PendingRegistration(msgspec.Struct, kw_only=True):
    """Registered under the `approval` policy: no token until a moderator approves."""

    user_id: str
    status: Literal["pending"]


class GuestGrant(msgspec.Struct, kw_only=True):
    user_id: str
    username: str
    token: str
    #: Unix seconds.
    expires_at: int


class SessionList(msgspec.Struct, kw_only=True):
    """The caller's live logins, most recently used first."""

    sessions: list[SessionView]


# ---- people -------------------------------------------------------------------------------


class UsersQuery(msgspec.Struct, kw_only=True):
    """Exactly one of `q` (search the directory by a username or display-name prefix; not for
    guests) and `ids` (comma-separated user ids: their public profiles)."""

    q: Annotated[str, Meta(min_length=MIN_DIRECTORY_PREFIX, max_length=MAX_DIRECTORY_PREFIX)] | None = None
    ids: Annotated[str, Meta(min_length=1)] | None = None
    #: How many users a search answers (`q` only).
    limit: Annotated[int, Meta(ge=1, le=MAX_DIRECTORY_RESULTS)] | None = None


class Users(msgspec.Struct, kw_only=True):
    """`profiles` answers `ids` (unknown ids are left out), `users` answers `q` (without the
    caller and the users they block)."""

    profiles: list[Profile] | msgspec.UnsetType = msgspec.UNSET
    users: list[Profile] | msgspec.UnsetType = msgspec.UNSET


class PrivacySettings(msgspec.Struct, kw_only=True):
    #: Who may add the user to a conversation directly; everyone else invites them.
    who_may_add: Literal["anyone", "contacts", "nobody"]


# ---- attachments --------------------------------------------------------------------------


class UploadTicket(msgspec.Struct, kw_only=True):
    """Where and how to PUT the bytes: send exactly `headers` (they are signed)."""

    id: str
    upload_url: str
    method: str
    headers: dict[str, str]
    #: Unix seconds.
    expires_at: int


class Download(AttachmentRow, kw_only=True):
    """An attachment with a short-lived GET URL for its bytes."""

    url: str
    expires_at: int


# ---- the instance -------------------------------------------------------------------------


class RateLimit(msgspec.Struct, kw_only=True):
    burst: int
    window_s: int


class UploadLimits(msgspec.Struct, kw_only=True):
    max_bytes: int
    mime: list[str]
    max_per_message: int
    max_name_chars: int


class MediaLimits(msgspec.Struct, kw_only=True):
    thumb_sizes: list[int]
    thumb_mime: str
    avatar_max_bytes: int


class Capabilities(msgspec.Struct, kw_only=True):
    version: str
    protocol: int
    subprotocols: list[str]
    limits: dict[str, int]
    rate_limits: dict[str, RateLimit]
    uploads: UploadLimits
    features: dict[str, bool]
    media: MediaLimits
    #: Conversations of at most this many members get `delivered` events and receipts per member.
    receipts_max_members: int


class Health(msgspec.Struct, kw_only=True):
    status: Literal["ok", "dead"]
    #: The gateway's id: several processes may share a port.
    id: str | None = None


class Readiness(msgspec.Struct, kw_only=True):
    ready: bool
    #: Each dependency: whether it answered the probe.
    checks: dict[str, bool]
    id: str | None = None


class CallAnswer(msgspec.Struct, kw_only=True):
    """A call operation's answer through REST: the call as it now is."""

    call: CallView


class CallSettingsAnswer(msgspec.Struct, kw_only=True):
    """PATCH .../calls/settings: the conversation's call settings (null: the instance's default)."""

    conv: str
    enabled: bool
    max_participants: int | None
    max_video_subscriptions: int | None


class DeviceList(msgspec.Struct, kw_only=True):
    """GET /v1/devices: the caller's devices that can still be reached (their login lives)."""

    devices: list[DeviceView]


class NotifySettingsAnswer(msgspec.Struct, kw_only=True):
    """GET /v1/me/notifications: the account default and each conversation's own settings."""

    default: NotifySettings
    convs: dict[str, NotifySettings]
