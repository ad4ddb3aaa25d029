"""The push provider contract: what each pushkin's answers are for the pushes Parley sends. It
runs against the stand-ins (tests/push_standins) and, unchanged, against FCM and APNs
themselves when credentials are given (docs/operations.md, "Running the push contract suite
against FCM and APNs"); without them those runs are skipped, with the reason."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest

from push.notification import Failed, Outcome, Platform, Prune, PushRequest, Sent
from push.providers import Pushkin
from push.providers.apns import ApnsPushkin, apns_client
from push.providers.fcm import FcmPushkin, fcm_app
from tests.push_standins.fixtures import (PushKeys, apns_token, fcm_token, new_apns_standin,  # noqa: F401
                                          new_fcm_standin, push_keys, standin_apns_pushkin, standin_fcm_pushkin)
from tests.push_standins.keys import APNS_TOPIC

#: Real services answer within seconds; a stuck send fails the run instead of hanging it.
REAL_TIMEOUT_S = 15.0


@dataclass
class Target:
    """One provider to run the contract on: its pushkin and the tokens of a test device."""

    provider: str
    pushkin: Pushkin
    token: str
    app_id: str
    #: The device's PushKit token (APNs only); None: the VoIP cases are skipped.
    voip_token: str | None = None

    def request(self, **fields: Any) -> PushRequest:
        platform: Platform = "fcm" if self.provider == "fcm" else "apns"
        return msgspec.convert({"user": "contract", "device_id": "contract-device", "platform": platform,
                                "token": self.token, "app_id": self.app_id, "conv": "contract-conv", "seq": 1,
                                "title": "Parley contract", "body": "A push from the contract suite", "badge": 1,
                                **fields}, PushRequest)

    def call(self, kind: str) -> PushRequest:
        fields: dict[str, Any] = {"kind": kind, "call_id": "contract-call", "call_media": "audio", "body": None}
        if self.provider == "apns":
            if self.voip_token is None:
                pytest.skip("no VoIP token: set PARLEY_TEST_APNS_VOIP_TOKEN to send VoIP pushes")
            fields.update(platform="apns_voip", token=self.voip_token)
        return self.request(**fields)


def _env(*names: str) -> dict[str, str] | None:
    values = {name: os.environ.get(name, "") for name in names}
    return values if all(values.values()) else None


async def _real_fcm() -> Target:
    env = _env("PARLEY_TEST_FCM_CREDENTIALS", "PARLEY_TEST_FCM_TOKEN")
    if env is None:
        pytest.skip("no FCM credentials: set PARLEY_TEST_FCM_CREDENTIALS (service account JSON) and "
                    "PARLEY_TEST_FCM_TOKEN (a test device's registration token) to run the contract against FCM")
    pushkin = FcmPushkin(fcm_app(Path(env["PARLEY_TEST_FCM_CREDENTIALS"])), timeout_s=REAL_TIMEOUT_S)
    return Target("fcm", pushkin, env["PARLEY_TEST_FCM_TOKEN"], os.environ.get("PARLEY_TEST_FCM_APP_ID", "android"))


async def _real_apns() -> Target:
    env = _env("PARLEY_TEST_APNS_KEY", "PARLEY_TEST_APNS_KEY_ID", "PARLEY_TEST_APNS_TEAM_ID",
               "PARLEY_TEST_APNS_TOPIC", "PARLEY_TEST_APNS_TOKEN")
    if env is None:
        pytest.skip("no APNs credentials: set PARLEY_TEST_APNS_KEY (.p8 path), PARLEY_TEST_APNS_KEY_ID, "
                    "PARLEY_TEST_APNS_TEAM_ID, PARLEY_TEST_APNS_TOPIC (bundle id) and PARLEY_TEST_APNS_TOKEN "
                    "to run the contract against APNs")
    client = apns_client(key_path=Path(env["PARLEY_TEST_APNS_KEY"]), key_id=env["PARLEY_TEST_APNS_KEY_ID"],
                         team_id=env["PARLEY_TEST_APNS_TEAM_ID"], topic=env["PARLEY_TEST_APNS_TOPIC"],
                         sandbox=os.environ.get("PARLEY_TEST_APNS_SANDBOX", "true").lower() in ("1", "true", "yes"))
    return Target("apns", ApnsPushkin(client, timeout_s=REAL_TIMEOUT_S), env["PARLEY_TEST_APNS_TOKEN"],
                  env["PARLEY_TEST_APNS_TOPIC"], os.environ.get("PARLEY_TEST_APNS_VOIP_TOKEN") or None)


@pytest.fixture(params=["fcm-standin", "apns-standin", "fcm", "apns"])
async def target(request: pytest.FixtureRequest, push_keys: PushKeys, tmp_path: Path,
                 monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Target]:
    async with contextlib.AsyncExitStack() as stack:
        if request.param == "fcm-standin":
            fcm = new_fcm_standin(push_keys, monkeypatch)
            await fcm.start()
            stack.push_async_callback(fcm.stop)
            t = Target("fcm", standin_fcm_pushkin(fcm, tmp_path), fcm_token(1), "chat.parley.android")
        elif request.param == "apns-standin":
            apns = new_apns_standin(push_keys)
            await apns.start()
            stack.push_async_callback(apns.stop)
            t = Target("apns", standin_apns_pushkin(apns, push_keys), apns_token(1), APNS_TOPIC, apns_token(2))
        elif request.param == "fcm":
            t = await _real_fcm()
        else:
            t = await _real_apns()
        stack.push_async_callback(t.pushkin.close)
        yield t


async def send_one(target: Target, request: PushRequest) -> Outcome:
    (outcome,) = await target.pushkin.send([request])
    return outcome


async def test_a_message_is_accepted(target: Target) -> None:
    r = target.request()
    assert await send_one(target, r) == Sent(r)


async def test_a_message_without_preview_is_accepted(target: Target) -> None:
    r = target.request(previews=False, e2e=True)
    assert await send_one(target, r) == Sent(r)


async def test_a_message_over_the_size_limit_is_cut_and_accepted(target: Target) -> None:
    r = target.request(body="Parley \U0001f4ac " * 1000)
    assert await send_one(target, r) == Sent(r)


async def test_a_clearing_update_is_accepted(target: Target) -> None:
    r = target.request(kind="clear", badge=0)
    assert await send_one(target, r) == Sent(r)


async def test_a_call_and_its_cancel_are_accepted(target: Target) -> None:
    ring, cancel = target.call("call"), target.call("call_cancel")
    assert await target.pushkin.send([ring, cancel]) == [Sent(ring), Sent(cancel)]


async def test_a_malformed_token_is_refused_as_the_provider_documents(target: Target) -> None:
    r = target.request(token="not a device token!")
    expected = Failed(r, "INVALID_ARGUMENT") if target.provider == "fcm" else Prune(r, "BadDeviceToken")
    assert await send_one(target, r) == expected


async def test_a_batch_answers_each_push_in_order(target: Target) -> None:
    good, bad = target.request(), target.request(token="not a device token!", device_id="other")
    outcomes = await target.pushkin.send([good, bad, good])
    assert [type(o) for o in outcomes] == [Sent, type(await send_one(target, bad)), Sent]
    assert [o.request for o in outcomes] == [good, bad, good]
