"""Each provider's payload for one push request: pure code, values in and values out.

What a push may show is decided here, once for both providers: previews off shows
"New message" and nothing else, an end-to-end encrypted message never carries its body, and a
payload over the provider's size limit has its text cut on a character boundary until it fits.
Notifications collapse per conversation (per call for call pushes): `collapse_key` on FCM,
`apns-collapse-id` on APNs, where `thread-id` also groups them by conversation.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from push.notification import Priority, PushRequest

#: Apple's limit for a notification's JSON body (5 KB for VoIP; 4 KB is kept for all).
APNS_MAX_BYTES = 4096
#: FCM's limit for a message's data and notification fields.
FCM_MAX_BYTES = 4096
#: Apple refuses a longer `apns-collapse-id` (BadCollapseId).
APNS_COLLAPSE_ID_MAX_BYTES = 64
#: A ring that arrives a minute late is noise; its cancel shares the TTL so that, with the same
#: collapse id, a cancel replaces a ring still waiting for an offline device.
CALL_TTL_S = 60
#: What a notification says when it may not say more (previews off, encrypted, no text).
GENERIC_TEXT = {"message": "New message", "call": "Incoming call"}
ELLIPSIS = "\u2026"

ApnsPushType = Literal["alert", "background", "voip"]
_P = TypeVar("_P")


class PayloadError(ValueError):
    """The request cannot become a payload; `reason` is the code an outcome carries."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ApnsPayload:
    """One APNs request: the headers that vary per push and the JSON body."""

    topic: str
    push_type: ApnsPushType
    priority: int
    collapse_id: str
    #: Seconds APNs keeps trying to deliver; None: its default (it stores the last one).
    ttl_s: int | None
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class FcmNotification:
    """What Android shows by itself; `tag` replaces an earlier notification with the same tag."""

    title: str | None
    body: str
    tag: str
    count: int | None


@dataclass(frozen=True, slots=True)
class FcmPayload:
    """One FCM HTTP v1 message for an Android device (the `android` block and `data`)."""

    data: dict[str, str]
    priority: Priority
    collapse_key: str
    ttl_s: int | None
    #: None: a data message the app handles itself (calls, clearing updates).
    notification: FcmNotification | None


def apns_payload(request: PushRequest) -> ApnsPayload:
    """The APNs request for `request` (platform `apns` or `apns_voip`)."""
    collapse = collapse_id(request)
    if request.platform == "apns_voip":
        # PushKit tokens take calls only: iOS ends an app that gets a VoIP push without
        # reporting a call to CallKit, so a cancel is a VoIP push too (the app reports and ends it).
        if request.kind not in ("call", "call_cancel"):
            raise PayloadError("voip_token_takes_calls_only")
        return _fit(lambda title, _body: ApnsPayload(
            topic=request.app_id + ".voip", push_type="voip", priority=10, collapse_id=collapse, ttl_s=CALL_TTL_S,
            body=_call_fields(request, title)), apns_size, _caller(request), None, APNS_MAX_BYTES)
    if request.kind in ("call_cancel", "clear"):
        # Removing what is shown needs the app to run: a background push, which Apple takes at
        # priority 5 only. It still carries the badge, so the icon is right at once.
        aps: dict[str, Any] = {"content-available": 1}
        if request.badge is not None and request.kind == "clear":
            aps["badge"] = request.badge
        return ApnsPayload(topic=request.app_id, push_type="background", priority=5, collapse_id=collapse,
                           ttl_s=CALL_TTL_S if request.kind == "call_cancel" else None,
                           body={"aps": aps, **_custom(request)})
    title, body = visible_text(request)
    priority = 10 if request.kind == "call" or request.priority == "high" else 5
    ttl = CALL_TTL_S if request.kind == "call" else None

    def render(title: str | None, body: str | None) -> ApnsPayload:
        alert: dict[str, str] = {}
        if title is not None:
            alert["title"] = title
        if body is not None:
            alert["body"] = body
        aps: dict[str, Any] = {"alert": alert, "sound": "default", "thread-id": request.conv}
        if request.badge is not None:
            aps["badge"] = request.badge
        if request.e2e:
            # Lets the app's notification service extension fetch and decrypt the message.
            aps["mutable-content"] = 1
        return ApnsPayload(topic=request.app_id, push_type="alert", priority=priority, collapse_id=collapse,
                           ttl_s=ttl, body={"aps": aps, **_custom(request)})

    return _fit(render, apns_size, title, body, APNS_MAX_BYTES)


def fcm_payload(request: PushRequest) -> FcmPayload:
    """The FCM message for `request` (platform `fcm`)."""
    collapse = collapse_id(request)
    if request.kind in ("call", "call_cancel"):
        # A data message at high priority wakes the app at once to ring (or stop ringing)
        # with its own full-screen call UI; the system would show a notification as a banner.
        return _fit(lambda title, _body: FcmPayload(
            data=_strings(_call_fields(request, title)), priority="high", collapse_key=collapse, ttl_s=CALL_TTL_S,
            notification=None), fcm_size, _caller(request), None, FCM_MAX_BYTES)
    data = _strings(_custom(request))
    if request.badge is not None:
        data["badge"] = str(request.badge)
    if request.kind == "clear":
        # Same collapse key as the conversation's messages: a clear replaces a message push
        # still waiting for an offline device, which then never shows what was read.
        return FcmPayload(data=data, priority="normal", collapse_key=collapse, ttl_s=None, notification=None)
    title, body = visible_text(request)
    return _fit(lambda title, body: FcmPayload(
        data=data, priority=request.priority, collapse_key=collapse, ttl_s=None,
        notification=FcmNotification(title=title, body=body or "", tag=collapse, count=request.badge)),
        fcm_size, title, body, FCM_MAX_BYTES)


def visible_text(request: PushRequest) -> tuple[str | None, str]:
    """(title, body) a notification may show: nothing but the generic text with previews off,
    the title but never the body of an end-to-end encrypted message."""
    generic = GENERIC_TEXT["call" if request.kind == "call" else "message"]
    if not request.previews:
        return None, generic
    if request.e2e or not request.body:
        return request.title, generic
    return request.title, request.body


def collapse_id(request: PushRequest) -> str:
    """The id under which this push replaces earlier ones: the conversation, or the call."""
    if request.collapse_id:
        key = request.collapse_id
    elif request.kind in ("call", "call_cancel"):
        if not request.call_id:
            raise PayloadError("call_id_missing")
        key = "call-" + request.call_id
    else:
        key = request.conv
    if len(key.encode()) > APNS_COLLAPSE_ID_MAX_BYTES:
        key = hashlib.sha256(key.encode()).hexdigest()  # 64 hex digits: stable and short enough
    return key


def apns_size(payload: ApnsPayload) -> int:
    """Bytes of the body as aioapns sends it (json.dumps, non-ASCII as UTF-8)."""
    return len(json.dumps(payload.body, ensure_ascii=False).encode())


def fcm_size(payload: FcmPayload) -> int:
    """Bytes of the data and notification fields as JSON, which FCM's limit counts (counted
    whole: FCM does not say which of a notification's fields it leaves out)."""
    counted: dict[str, Any] = {"data": payload.data}
    if payload.notification is not None:
        n = payload.notification
        counted["notification"] = {"title": n.title, "body": n.body, "tag": n.tag, "notification_count": n.count}
    return len(json.dumps(counted, ensure_ascii=False, separators=(",", ":")).encode())


def _custom(request: PushRequest) -> dict[str, Any]:
    """The fields the app reads to open or clear the right conversation, or join the call."""
    fields: dict[str, Any] = {"kind": request.kind, "conv": request.conv, "seq": request.seq}
    if request.call_id is not None:
        fields["call_id"] = request.call_id
    if request.call_media is not None:
        fields["media"] = request.call_media
    return fields


def _caller(request: PushRequest) -> str | None:
    """Who is calling, as far as the preview setting lets the push say."""
    return request.title if request.previews else None


def _call_fields(request: PushRequest, caller: str | None) -> dict[str, Any]:
    fields = _custom(request)
    if caller is not None:
        fields["title"] = caller
    return fields


def _strings(fields: dict[str, Any]) -> dict[str, str]:
    """FCM data values are strings only."""
    return {k: str(v) for k, v in fields.items()}


def _fit(render: Callable[[str | None, str | None], _P], size_of: Callable[[_P], int],
         title: str | None, body: str | None, limit: int) -> _P:
    """`render(title, body)` within `limit`: the body cut as little as needed, or dropped and
    the title cut."""
    payload = render(title, body)
    if size_of(payload) <= limit:
        return payload
    fitted = _longest_fitting(lambda text: render(title, text), size_of, body, limit) if body else None
    if fitted is None and title:
        fitted = _longest_fitting(lambda text: render(text, None), size_of, title, limit)
    if fitted is None:
        raise PayloadError("payload_too_large")
    return fitted


def _longest_fitting(render: Callable[[str], _P], size_of: Callable[[_P], int], text: str, limit: int) -> _P | None:
    """`render` of the longest prefix of `text` that fits with an ellipsis after it, found by
    bisection (escapes make the encoded size of a prefix hard to predict); None if none does.
    A prefix of a str ends between code points, so the UTF-8 it encodes to is never cut inside
    a character."""
    best: _P | None = None
    lo, hi = 0, len(text) - 1  # the whole text is known not to fit
    while lo <= hi:
        mid = (lo + hi) // 2
        payload = render(text[:mid] + ELLIPSIS)
        if size_of(payload) <= limit:
            best, lo = payload, mid + 1
        else:
            hi = mid - 1
    return best
