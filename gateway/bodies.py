"""The shapes of the client REST API that no other module types: the account bodies, which the
auth routes read field by field (to answer the contract's 400/401 for each), and the answers the
routes build as JSON objects. gateway/openapi.py documents the API with these and the Structs the
routes decode with (reports, uploads, privacy). The schemathesis test checks every answer the
server gives against them: a route that stops sending a field, or sends it with another type,
fails it (a new field does not: clients ignore fields they do not know)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from parley.auth import PASSWORD_MAX, PASSWORD_MIN, USERNAME_RE
from parley.records import AttachmentRow

# ---- accounts -----------------------------------------------------------------------------


class RegisterBody(msgspec.Struct, kw_only=True):
    #: Lowercased and trimmed on input; names starting with `guest-` or `deleted-`, and `system`
    #: and `cli`, are the server's own (400).
    username: Annotated[str, Meta(min_length=3, max_length=32, pattern=USERNAME_RE.pattern)]
    password: Annotated[str, Meta(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX)]
    #: Needed when the instance registers by invitation only.
    invite: str | None = None


class LoginBody(msgspec.Struct, kw_only=True):
    username: str
    password: str


class TokenGrant(msgspec.Struct, kw_only=True):
    user_id: str
    token: str


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


class Capabilities(msgspec.Struct, kw_only=True):
    version: str
    protocol: int
    subprotocols: list[str]
    limits: dict[str, int]
    rate_limits: dict[str, RateLimit]
    uploads: UploadLimits
    features: dict[str, bool]


class Health(msgspec.Struct, kw_only=True):
    status: Literal["ok", "dead"]
    #: The gateway's id: several processes may share a port.
    id: str | None = None


class Readiness(msgspec.Struct, kw_only=True):
    ready: bool
    #: Each dependency: whether it answered the probe.
    checks: dict[str, bool]
    id: str | None = None
