"""Provider answers -> outcomes (push/providers/errors.py): prune, retry or fail, in one place."""

from __future__ import annotations

import asyncio
import datetime as dt

import httpx
import pytest
from aioapns.exceptions import ConnectionClosed, MaxAttemptsExceeded
from firebase_admin import exceptions as fcm_errors
from firebase_admin import messaging
from google.auth.exceptions import RefreshError, TransportError

from push.notification import Failed, Prune, PushRequest, Retry, Sent
from push.payloads import PayloadError
from push.providers.errors import apns_outcome, fcm_outcome, retry_after_s, unanswered_outcome

R = PushRequest(user="u", device_id="d", platform="fcm", token="t", app_id="a", conv="c", seq=1)


def http(status: int, **headers: str) -> httpx.Response:
    return httpx.Response(status, headers=headers)


@pytest.mark.parametrize("error, code", [
    (messaging.UnregisteredError("gone", http_response=http(404)), "UNREGISTERED"),
    (messaging.SenderIdMismatchError("other sender", http_response=http(403)), "SENDER_ID_MISMATCH"),
])
def test_fcm_dead_tokens_are_pruned(error: fcm_errors.FirebaseError, code: str) -> None:
    assert fcm_outcome(R, error) == Prune(R, code)


@pytest.mark.parametrize("error, code", [
    (messaging.QuotaExceededError("slow down", http_response=http(429)), "QUOTA_EXCEEDED"),
    (fcm_errors.UnavailableError("down", http_response=http(503)), "UNAVAILABLE"),
    (fcm_errors.InternalError("oops", http_response=http(500)), "INTERNAL"),
    (fcm_errors.UnknownError("bad gateway", http_response=http(502)), "UNKNOWN"),
    (fcm_errors.ResourceExhaustedError("throttled", http_response=http(429)), "RESOURCE_EXHAUSTED"),
    (fcm_errors.DeadlineExceededError("timed out"), "DEADLINE_EXCEEDED"),
    (fcm_errors.UnavailableError("connect failed"), "UNAVAILABLE"),
    (fcm_errors.UnknownError("connection reset"), "UNKNOWN"),
])
def test_fcm_temporary_failures_are_retried(error: fcm_errors.FirebaseError, code: str) -> None:
    assert fcm_outcome(R, error) == Retry(R, code)


def test_fcm_retry_after_is_carried_in_seconds() -> None:
    error = messaging.QuotaExceededError("slow down", http_response=http(429, **{"Retry-After": "7"}))
    assert fcm_outcome(R, error) == Retry(R, "QUOTA_EXCEEDED", 7.0)


@pytest.mark.parametrize("error, code", [
    (fcm_errors.InvalidArgumentError("bad token", http_response=http(400)), "INVALID_ARGUMENT"),
    (messaging.ThirdPartyAuthError("apns cert", http_response=http(401)), "THIRD_PARTY_AUTH_ERROR"),
    (fcm_errors.PermissionDeniedError("no", http_response=http(403)), "PERMISSION_DENIED"),
    (fcm_errors.UnknownError("teapot", http_response=http(418)), "UNKNOWN"),
])
def test_other_fcm_errors_fail(error: fcm_errors.FirebaseError, code: str) -> None:
    assert fcm_outcome(R, error) == Failed(R, code)


def test_an_fcm_answer_without_error_is_sent() -> None:
    assert fcm_outcome(R, None) == Sent(R)


@pytest.mark.parametrize("status, reason", [(410, "Unregistered"), (410, "ExpiredToken"), (400, "BadDeviceToken"),
                                            (400, "DeviceTokenNotForTopic")])
def test_apns_dead_tokens_are_pruned(status: int, reason: str) -> None:
    assert apns_outcome(R, status, reason) == Prune(R, reason)


@pytest.mark.parametrize("status, reason", [(429, "TooManyRequests"), (500, "InternalServerError"),
                                            (503, "ServiceUnavailable"), (503, "Shutdown")])
def test_apns_temporary_failures_are_retried(status: int, reason: str) -> None:
    assert apns_outcome(R, status, reason) == Retry(R, reason)


@pytest.mark.parametrize("status, reason", [(400, "BadCollapseId"), (403, "InvalidProviderToken"),
                                            (413, "PayloadTooLarge"), (400, "TopicDisallowed")])
def test_other_apns_errors_fail(status: int, reason: str) -> None:
    assert apns_outcome(R, status, reason) == Failed(R, reason)


def test_apns_200_is_sent_and_a_reasonless_error_is_named_by_its_status() -> None:
    assert apns_outcome(R, 200, None) == Sent(R)
    assert apns_outcome(R, 502, None) == Retry(R, "502")


@pytest.mark.parametrize("error, outcome", [
    (asyncio.TimeoutError(), Retry(R, "timeout")),
    (ConnectionResetError(), Retry(R, "connection")),
    (MaxAttemptsExceeded(), Retry(R, "connection")),
    (ConnectionClosed(), Retry(R, "connection")),
    (TransportError("dns"), Retry(R, "connection")),
    (RefreshError("try later", retryable=True), Retry(R, "connection")),
    (RefreshError("invalid_grant"), Failed(R, "auth_refresh_refused")),
    (PayloadError("payload_too_large"), Failed(R, "payload_too_large")),
])
def test_sends_that_raised_are_classified(error: BaseException, outcome: object) -> None:
    assert unanswered_outcome(R, error) == outcome


def test_a_bug_is_not_mistaken_for_a_provider_failure() -> None:
    with pytest.raises(KeyError):
        unanswered_outcome(R, KeyError("bug"))


def test_retry_after_takes_seconds_or_an_http_date() -> None:
    now = dt.datetime(2025, 1, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
    assert retry_after_s("120") == 120.0
    assert retry_after_s("Wed, 01 Jan 2025 12:00:30 GMT", now) == 30.0
    assert retry_after_s("Wed, 01 Jan 2025 11:00:00 GMT", now) == 0.0
    assert retry_after_s("soon") is None and retry_after_s(None) is None and retry_after_s("") is None
