"""The values the push worker handles: one push request per device, and what became of it.

A `PushRequest` is what the decision writes to `parley.push` (one per device of a member who is
not looking) and what a provider client sends; an `Outcome` is the provider's answer for that
one device, already classified (sent, prune the device, retry later, failed for good).
"""

from __future__ import annotations

from typing import Literal, Union

import msgspec

#: Which provider and which token: `apns_voip` is an iOS device's PushKit (VoIP) token, told
#: apart from its ordinary APNs token because Apple routes each to its own topic.
Platform = Literal["fcm", "apns", "apns_voip"]
#: What the push is for. `clear` follows a read on another device: badge and removal of the
#: notifications already shown for the conversation; `call_cancel` stops a ringing device.
PushKind = Literal["message", "call", "call_cancel", "clear"]
Priority = Literal["high", "normal"]
CallMedia = Literal["audio", "video"]


class PushRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One notification for one device. Text is what the decision may show; the payload
    builder still hides it when the user turned previews off or the message is end-to-end
    encrypted."""

    user: str
    device_id: str
    platform: Platform
    token: str
    #: The app the token belongs to: the iOS bundle id (the APNs topic) or the Android package.
    app_id: str
    conv: str
    seq: int
    kind: PushKind = "message"
    title: str | None = None
    body: str | None = None
    #: The user's total unread count; None leaves the app's badge as it is.
    badge: int | None = None
    #: Notifications with one collapse id replace each other; None: one per conversation
    #: (one per call for call pushes).
    collapse_id: str | None = None
    priority: Priority = "high"
    #: The message is end-to-end encrypted: its body never goes into a push.
    e2e: bool = False
    #: The user's preview setting: off shows "New message" and nothing else.
    previews: bool = True
    call_id: str | None = None
    call_media: CallMedia | None = None
    #: When the message was stored and when the push was decided (ms since the epoch): the
    #: worker measures both to the provider's answer.
    stored_ms: int | None = None
    decided_ms: int | None = None
    #: W3C traceparent of the message's trace (parley.tracing); the Kafka record carries it too.
    trace: str | None = None

    def dedup_key(self) -> str:
        """One push per device, conversation, seq, kind and call: a redelivered request is not
        sent twice."""
        return f"{self.device_id}:{self.conv}:{self.seq}:{self.kind}:{self.call_id or ''}"


class Sent(msgspec.Struct, frozen=True):
    """The provider accepted the push."""

    request: PushRequest


class Prune(msgspec.Struct, frozen=True):
    """The provider says the token is dead (app uninstalled, token of another app or sender):
    the device should be deleted, and never retried."""

    request: PushRequest
    reason: str


class Retry(msgspec.Struct, frozen=True):
    """A temporary failure (throttled, provider unavailable, timed out): send again later, no
    sooner than `after_s` when the provider said so (Retry-After)."""

    request: PushRequest
    reason: str
    after_s: float | None = None


class Failed(msgspec.Struct, frozen=True):
    """A failure that sending again will not fix (a rejected payload, our credentials)."""

    request: PushRequest
    reason: str


Outcome = Union[Sent, Prune, Retry, Failed]
