"""How each provider's answers become outcomes: the one place that decides whether a device is
dead (prune), a send may work later (retry, after Retry-After when given), or it never will.

| provider | prune | retry | anything else |
|---|---|---|---|
| FCM | UNREGISTERED, SENDER_ID_MISMATCH | QUOTA_EXCEEDED, UNAVAILABLE, INTERNAL, UNAUTHENTICATED (a new token first), any 429 or 5xx, a deadline or transport error | failed |
| APNs | 410 (Unregistered), 400 BadDeviceToken, 400 DeviceTokenNotForTopic | 429, 5xx | failed |
| both | | a send that timed out or lost its connection | |
"""

from __future__ import annotations

import datetime as dt
import email.utils

from aioapns.exceptions import ConnectionClosed, ConnectionError as ApnsConnectionError, MaxAttemptsExceeded
from firebase_admin import exceptions as fcm_errors
from firebase_admin import messaging
from google.auth.exceptions import RefreshError, TransportError

from push.notification import Failed, Outcome, Prune, PushRequest, Retry, Sent
from push.payloads import PayloadError

#: FCM's own error codes (from the response's FcmError detail), by the class firebase-admin
#: raises for each.
_FCM_CODES: dict[type[fcm_errors.FirebaseError], str] = {
    messaging.UnregisteredError: "UNREGISTERED",
    messaging.SenderIdMismatchError: "SENDER_ID_MISMATCH",
    messaging.QuotaExceededError: "QUOTA_EXCEEDED",
    messaging.ThirdPartyAuthError: "THIRD_PARTY_AUTH_ERROR",
}
FCM_PRUNE = frozenset({"UNREGISTERED", "SENDER_ID_MISMATCH"})
#: QUOTA_EXCEEDED arrives as RESOURCE_EXHAUSTED; DEADLINE_EXCEEDED is firebase-admin's name
#: for a request that timed out.
FCM_RETRY = frozenset({"QUOTA_EXCEEDED", "RESOURCE_EXHAUSTED", "UNAVAILABLE", "INTERNAL", "DEADLINE_EXCEEDED"})
#: FCM refused the access token (expired early, or revoked): the pushkin fetches a new one
#: before the next attempt, as firebase-admin's own client did on a 401.
FCM_TOKEN_REFUSED = "UNAUTHENTICATED"

APNS_PRUNE_REASONS = frozenset({"BadDeviceToken", "DeviceTokenNotForTopic"})

#: Exceptions of a send that never got an answer: the connection failed or the time ran out.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    TimeoutError, OSError, ApnsConnectionError, ConnectionClosed, MaxAttemptsExceeded, TransportError)


def fcm_outcome(request: PushRequest, error: fcm_errors.FirebaseError | None) -> Outcome:
    """The outcome of one FCM send that answered `error` (None: accepted)."""
    if error is None:
        return Sent(request)
    code = next((c for cls, c in _FCM_CODES.items() if isinstance(error, cls)), str(error.code))
    if code in FCM_PRUNE:
        return Prune(request, code)
    response = error.http_response
    if response is None:
        # No HTTP answer at all: the connection broke (UNKNOWN) or the time ran out.
        return Retry(request, code) if code in FCM_RETRY or code == fcm_errors.UNKNOWN else Failed(request, code)
    if code in FCM_RETRY or code == FCM_TOKEN_REFUSED or _temporary(response.status_code):
        return Retry(request, code, retry_after_s(response.headers.get("Retry-After")))
    return Failed(request, code)


def apns_outcome(request: PushRequest, status: int, reason: str | None) -> Outcome:
    """The outcome of one APNs send answered with HTTP `status` and `reason` (its JSON body's)."""
    if status == 200:
        return Sent(request)
    code = reason or str(status)
    if status == 410 or (status == 400 and reason in APNS_PRUNE_REASONS):
        return Prune(request, code)
    if _temporary(status):
        # aioapns does not hand headers on; APNs sends no Retry-After anyway.
        return Retry(request, code)
    return Failed(request, code)


def _temporary(status: int) -> bool:
    return status == 429 or 500 <= status < 600


def unanswered_outcome(request: PushRequest, error: BaseException) -> Outcome:
    """The outcome of a send that raised instead of answering. Anything but a payload that
    cannot be built or a transport failure is a bug, and is raised again."""
    if isinstance(error, PayloadError):
        return Failed(request, error.reason)
    if isinstance(error, TimeoutError):
        return Retry(request, "timeout")
    if isinstance(error, TRANSIENT_ERRORS) or (isinstance(error, RefreshError) and error.retryable):
        return Retry(request, "connection")
    if isinstance(error, RefreshError):
        # The OAuth server refused our service account: only an operator can fix that.
        return Failed(request, "auth_refresh_refused")
    raise error


def retry_after_s(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds a Retry-After header asks for: delta-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(0.0, (when - (now or dt.datetime.now(dt.timezone.utc))).total_seconds())
