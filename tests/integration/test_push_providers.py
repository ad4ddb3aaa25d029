"""The FCM and APNs pushkins through the real client libraries (firebase-admin, aioapns) to
stand-ins that speak the providers' wire protocols (tests/push_standins): what goes on the wire,
how each refusal is classified, retries, dead letters, timeouts and batching."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from firebase_admin import messaging

from push.notification import Failed, Prune, PushRequest, Retry, Sent
from push.providers.apns import ApnsPushkin
from parley.app.processes import free_port
from push.providers.fcm import FcmPushkin, fcm_app
from parley.config import Settings
from push.retry import DeadLetter, RetryPolicy, send_with_retries
from push.sender import configured_pushkins, send_all
from tests.push_standins.apns import ApnsStandin
from tests.push_standins.fcm import FcmStandin
from tests.push_standins.fixtures import (PushKeys, Sleeps, apns_pushkin, apns_standin, apns_token, fcm_pushkin,  # noqa: F401
                                          fcm_standin, fcm_token, push_keys, standin_apns_pushkin,
                                          standin_fcm_pushkin)
from tests.push_standins.keys import APNS_TOPIC

pytestmark = pytest.mark.integration

RETRIES = RetryPolicy(attempts=4, base_s=0.01, max_delay_s=5.0)


def fcm(i: int | str, **fields: Any) -> PushRequest:
    return msgspec.convert({"user": "u1", "device_id": f"d{i}", "platform": "fcm", "token": fcm_token(i),
                            "app_id": "chat.parley.android", "conv": "c1", "seq": 5, "title": "Ada",
                            "body": "hello", "badge": 2, **fields}, PushRequest)


def apns(i: int, **fields: Any) -> PushRequest:
    return msgspec.convert({"user": "u1", "device_id": f"d{i}", "platform": "apns", "token": apns_token(i),
                            "app_id": APNS_TOPIC, "conv": "c1", "seq": 5, "title": "Ada", "body": "hello",
                            "badge": 2, **fields}, PushRequest)



# ---- FCM --------------------------------------------------------------------------------------


async def test_fcm_sends_a_message_signed_in_with_the_service_account(
        fcm_pushkin: FcmPushkin, fcm_standin: FcmStandin) -> None:
    assert await fcm_pushkin.send([fcm(1)]) == [Sent(fcm(1))]
    assert await fcm_pushkin.send([fcm(2)]) == [Sent(fcm(2))]
    (first, _) = fcm_standin.accepted
    assert first.message == {
        "token": fcm_token(1), "data": {"kind": "message", "conv": "c1", "seq": "5", "badge": "2"},
        "android": {"collapse_key": "c1", "priority": "high",
                    "notification": {"title": "Ada", "body": "hello", "tag": "c1", "notification_count": 2}}}
    assert fcm_standin.tokens_issued == 1  # one OAuth token, fetched in a thread, reused


@pytest.mark.parametrize("status, code", [(404, "UNREGISTERED"), (403, "SENDER_ID_MISMATCH")])
async def test_fcm_dead_tokens_are_pruned(fcm_pushkin: FcmPushkin, fcm_standin: FcmStandin,
                                          status: int, code: str) -> None:
    fcm_standin.script.fail(fcm_token(1), status, code)
    assert await fcm_pushkin.send([fcm(1), fcm(2)]) == [Prune(fcm(1), code), Sent(fcm(2))]


async def test_fcm_answers_each_message_on_its_own(fcm_pushkin: FcmPushkin, fcm_standin: FcmStandin) -> None:
    bad = fcm(1, token="not a token!")
    assert await fcm_pushkin.send([bad, fcm(2)]) == [Failed(bad, "INVALID_ARGUMENT"), Sent(fcm(2))]


@pytest.mark.parametrize("status, code", [(429, "QUOTA_EXCEEDED"), (503, "UNAVAILABLE"), (500, "INTERNAL")])
async def test_fcm_throttling_and_outages_are_retried_then_delivered(
        fcm_pushkin: FcmPushkin, fcm_standin: FcmStandin, status: int, code: str) -> None:
    fcm_standin.script.fail(fcm_token(1), status, code, times=2, retry_after="1")
    sleeps = Sleeps()
    delivery = await send_with_retries(fcm_pushkin, [fcm(1), fcm(2)], RETRIES, sleep=sleeps)
    assert sorted(s.request.device_id for s in delivery.sent) == ["d1", "d2"]
    assert delivery.retried == 2 and delivery.dead == []
    assert len(sleeps.waits) == 2 and min(sleeps.waits) >= 1.0  # Retry-After: 1 honoured
    # firebase-admin's own retries are off: every attempt is one request, decided by push/retry.py.
    assert [r.status for r in fcm_standin.received if r.message["token"] == fcm_token(1)] == [status, status, 200]


async def test_fcm_pushes_refused_until_the_last_attempt_are_dead_letters(
        fcm_pushkin: FcmPushkin, fcm_standin: FcmStandin) -> None:
    fcm_standin.script.fail(fcm_token(1), 503, "UNAVAILABLE")
    delivery = await send_with_retries(fcm_pushkin, [fcm(1)], RETRIES, sleep=Sleeps())
    assert delivery.dead == [DeadLetter(fcm(1), "UNAVAILABLE", RETRIES.attempts)] and delivery.sent == []
    assert len(fcm_standin.received) == RETRIES.attempts


async def test_a_refused_access_token_is_fetched_again_and_the_push_retried(
        fcm_pushkin: FcmPushkin, fcm_standin: FcmStandin) -> None:
    assert await fcm_pushkin.send([fcm(1)]) == [Sent(fcm(1))]
    fcm_standin.revoke_tokens()
    delivery = await send_with_retries(fcm_pushkin, [fcm(2)], RETRIES, sleep=Sleeps())
    assert [s.request for s in delivery.sent] == [fcm(2)] and delivery.retried == 1
    assert [r.status for r in fcm_standin.received] == [200, 401, 200]
    assert fcm_standin.tokens_issued == 2


async def test_an_fcm_send_that_hangs_times_out_and_is_retried(
        fcm_standin: FcmStandin, tmp_path: Path) -> None:
    pushkin = standin_fcm_pushkin(fcm_standin, tmp_path, timeout_s=0.3)
    try:
        fcm_standin.script.hang(fcm_token(1), times=1)
        started = time.monotonic()
        delivery = await send_with_retries(pushkin, [fcm(1)], RETRIES, sleep=Sleeps())
        assert time.monotonic() - started < 5
        assert [s.request for s in delivery.sent] == [fcm(1)] and delivery.retried == 1
    finally:
        await pushkin.close()


async def test_an_fcm_endpoint_refusing_connections_is_retried(fcm_standin: FcmStandin, tmp_path: Path) -> None:
    app = fcm_app(fcm_standin.write_service_account(tmp_path / "service-account.json"))
    pushkin = FcmPushkin(app, timeout_s=2.0, endpoint=f"https://127.0.0.1:{free_port()}")  # nobody listens
    try:
        assert await pushkin.send([fcm(1), fcm(2)]) == [Retry(fcm(1), "UNAVAILABLE"), Retry(fcm(2), "UNAVAILABLE")]
    finally:
        await pushkin.close()


async def test_a_cancelled_fcm_send_leaves_the_client_able_to_send(fcm_pushkin: FcmPushkin,
                                                                   fcm_standin: FcmStandin) -> None:
    fcm_standin.script.hang(fcm_token(1), times=1)
    hanging = asyncio.create_task(fcm_pushkin.send([fcm(1)]))
    while fcm_standin.script.planned(fcm_token(1)):  # until the request reached the stand-in
        await asyncio.sleep(0.01)
    hanging.cancel()
    with pytest.raises(asyncio.CancelledError):
        await hanging
    assert await fcm_pushkin.send([fcm(2), fcm(3)]) == [Sent(fcm(2)), Sent(fcm(3))]


async def test_a_call_on_fcm_is_a_high_priority_data_message_and_its_cancel_too(
        fcm_pushkin: FcmPushkin, fcm_standin: FcmStandin) -> None:
    ring = fcm(1, kind="call", call_id="k9", call_media="audio", body=None, badge=None, priority="normal")
    cancel = fcm(1, kind="call_cancel", call_id="k9", call_media="audio", body=None, badge=None)
    assert await fcm_pushkin.send([ring, cancel]) == [Sent(ring), Sent(cancel)]
    for got, kind in zip(fcm_standin.accepted, ("call", "call_cancel")):
        assert got.message["android"] == {"collapse_key": "call-k9", "priority": "high", "ttl": "60s"}
        assert got.message["data"] == {"kind": kind, "conv": "c1", "seq": "5", "call_id": "k9", "media": "audio",
                                       "title": "Ada"}


async def test_1200_fcm_pushes_go_out_in_3_calls(fcm_pushkin: FcmPushkin, fcm_standin: FcmStandin,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = messaging.send_each_async

    async def counted(messages: list[messaging.Message], dry_run: bool = False, app: Any = None) -> Any:
        calls.append(len(messages))
        return await real(messages, dry_run, app)

    monkeypatch.setattr(messaging, "send_each_async", counted)
    requests = [fcm(i) for i in range(1200)]
    outcomes = await fcm_pushkin.send(requests)
    assert calls == [500, 500, 200]
    assert outcomes == [Sent(r) for r in requests]
    assert sorted(r.message["token"] for r in fcm_standin.accepted) == sorted(fcm_token(i) for i in range(1200))


async def test_an_oversized_fcm_message_is_cut_and_accepted(fcm_pushkin: FcmPushkin, fcm_standin: FcmStandin) -> None:
    assert await fcm_pushkin.send([fcm(1, body="\u00e9" * 6000)]) == [Sent(fcm(1, body="\u00e9" * 6000))]
    assert fcm_standin.accepted[0].message["android"]["notification"]["body"].endswith("\u2026")


# ---- APNs -------------------------------------------------------------------------------------


async def test_apns_sends_an_alert_with_token_auth(apns_pushkin: ApnsPushkin, apns_standin: ApnsStandin) -> None:
    assert await apns_pushkin.send([apns(1), apns(2)]) == [Sent(apns(1)), Sent(apns(2))]
    got = apns_standin.accepted[0]
    assert {k: got.headers[k] for k in ("apns-push-type", "apns-topic", "apns-priority", "apns-collapse-id")} == {
        "apns-push-type": "alert", "apns-topic": APNS_TOPIC, "apns-priority": "10", "apns-collapse-id": "c1"}
    assert got.payload == {"aps": {"alert": {"title": "Ada", "body": "hello"}, "sound": "default", "thread-id": "c1",
                                   "badge": 2}, "kind": "message", "conv": "c1", "seq": 5}
    assert apns_standin.connections == 1  # HTTP/2: both on one connection


@pytest.mark.parametrize("status, reason", [(410, "Unregistered"), (400, "DeviceTokenNotForTopic")])
async def test_apns_dead_tokens_are_pruned(apns_pushkin: ApnsPushkin, apns_standin: ApnsStandin,
                                           status: int, reason: str) -> None:
    apns_standin.script.fail(apns_token(1), status, reason)
    assert await apns_pushkin.send([apns(1), apns(2)]) == [Prune(apns(1), reason), Sent(apns(2))]


async def test_an_apns_token_apple_does_not_recognise_is_pruned(apns_pushkin: ApnsPushkin) -> None:
    bad = apns(1, token="not-a-device-token")
    assert await apns_pushkin.send([bad]) == [Prune(bad, "BadDeviceToken")]


@pytest.mark.parametrize("status, reason", [(429, "TooManyRequests"), (503, "ServiceUnavailable"),
                                            (500, "InternalServerError")])
async def test_apns_throttling_and_outages_are_retried_then_delivered(
        apns_pushkin: ApnsPushkin, apns_standin: ApnsStandin, status: int, reason: str) -> None:
    apns_standin.script.fail(apns_token(1), status, reason, times=2)
    delivery = await send_with_retries(apns_pushkin, [apns(1), apns(2)], RETRIES, sleep=Sleeps())
    assert sorted(s.request.device_id for s in delivery.sent) == ["d1", "d2"]
    assert delivery.retried == 2 and delivery.dead == []
    assert [r.status for r in apns_standin.received if r.token == apns_token(1)] == [status, status, 200]


async def test_apns_pushes_refused_until_the_last_attempt_are_dead_letters(
        apns_pushkin: ApnsPushkin, apns_standin: ApnsStandin) -> None:
    apns_standin.script.fail(apns_token(1), 503, "ServiceUnavailable")
    delivery = await send_with_retries(apns_pushkin, [apns(1)], RETRIES, sleep=Sleeps())
    assert delivery.dead == [DeadLetter(apns(1), "ServiceUnavailable", RETRIES.attempts)]


async def test_an_apns_send_that_is_never_answered_times_out_and_is_retried(
        apns_standin: ApnsStandin, push_keys: PushKeys) -> None:
    pushkin = standin_apns_pushkin(apns_standin, push_keys, timeout_s=0.3)
    try:
        apns_standin.script.hang(apns_token(1), times=1)
        started = time.monotonic()
        assert await pushkin.send([apns(1), apns(2)]) == [Retry(apns(1), "timeout"), Sent(apns(2))]
        assert time.monotonic() - started < 2
        delivery = await send_with_retries(pushkin, [apns(1)], RETRIES, sleep=Sleeps())
        assert [s.request for s in delivery.sent] == [apns(1)]
    finally:
        await pushkin.close()


async def test_a_voip_call_and_its_cancel_go_to_the_voip_topic_at_priority_10(
        apns_pushkin: ApnsPushkin, apns_standin: ApnsStandin) -> None:
    ring = apns(1, platform="apns_voip", kind="call", call_id="k9", call_media="video", body=None, badge=None)
    cancel = apns(1, platform="apns_voip", kind="call_cancel", call_id="k9", body=None, badge=None)
    assert await apns_pushkin.send([ring, cancel]) == [Sent(ring), Sent(cancel)]
    for got, kind in zip(sorted(apns_standin.accepted, key=lambda r: r.payload["kind"]), ("call", "call_cancel")):
        assert (got.headers["apns-push-type"], got.headers["apns-topic"], got.headers["apns-priority"],
                got.headers["apns-collapse-id"]) == ("voip", APNS_TOPIC + ".voip", "10", "call-k9")
        assert 55 <= int(got.headers["apns-expiration"]) - time.time() <= 61  # a late ring is dropped
        assert got.payload["kind"] == kind and got.payload["call_id"] == "k9"


async def test_a_clearing_update_is_a_background_push_at_priority_5(
        apns_pushkin: ApnsPushkin, apns_standin: ApnsStandin) -> None:
    clear = apns(1, kind="clear", badge=0)
    assert await apns_pushkin.send([clear]) == [Sent(clear)]
    got = apns_standin.accepted[0]
    assert (got.headers["apns-push-type"], got.headers["apns-priority"]) == ("background", "5")
    assert got.payload == {"aps": {"content-available": 1, "badge": 0}, "kind": "clear", "conv": "c1", "seq": 5}


async def test_an_oversized_apns_alert_is_cut_and_accepted(apns_pushkin: ApnsPushkin, apns_standin: ApnsStandin) -> None:
    big = apns(1, body="\U0001f600" * 3000)
    assert await apns_pushkin.send([big]) == [Sent(big)]
    assert apns_standin.accepted[0].payload["aps"]["alert"]["body"].endswith("\u2026")


# ---- both, as the worker will send --------------------------------------------------------------


async def test_a_mixed_batch_goes_to_both_providers_with_retries(
        fcm_pushkin: FcmPushkin, fcm_standin: FcmStandin, apns_pushkin: ApnsPushkin,
        apns_standin: ApnsStandin) -> None:
    fcm_standin.script.fail(fcm_token(1), 503, "UNAVAILABLE", times=1)
    apns_standin.script.fail(apns_token(2), 410, "Unregistered")
    voip = apns(3, platform="apns_voip", kind="call", call_id="k1", body=None)
    batch = [fcm(1), apns(2), voip, fcm(4)]
    delivery = await send_all({"fcm": fcm_pushkin, "apns": apns_pushkin}, batch, RETRIES, sleep=Sleeps())
    assert sorted(s.request.device_id for s in delivery.sent) == ["d1", "d3", "d4"]
    assert delivery.pruned == [Prune(apns(2), "Unregistered")] and delivery.retried == 1


async def test_the_settings_configure_a_pushkin_per_provider_with_credentials(
        push_keys: PushKeys, fcm_standin: FcmStandin, tmp_path: Path) -> None:
    account = fcm_standin.write_service_account(tmp_path / "account.json")
    apns_settings: dict[str, Any] = dict(apns_key=push_keys.apns_key, apns_key_id="K", apns_team_id="T",
                                         apns_topic="a.b")
    for settings, expected in [(Settings(), {}),
                               (Settings(fcm_credentials=account), {"fcm": FcmPushkin}),
                               (Settings(**apns_settings), {"apns": ApnsPushkin}),
                               (Settings(fcm_credentials=account, **apns_settings),
                                {"fcm": FcmPushkin, "apns": ApnsPushkin})]:
        pushkins = configured_pushkins(settings)
        try:
            assert {name: type(p) for name, p in pushkins.items()} == expected
        finally:
            for pushkin in pushkins.values():
                await pushkin.close()
