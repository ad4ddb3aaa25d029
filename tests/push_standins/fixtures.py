"""pytest fixtures for the push stand-ins and the product's pushkins pointed at them. A test
module imports the fixtures it uses from here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from push.providers.apns import ApnsPushkin
from push.providers.fcm import FcmPushkin, fcm_app
from tests.push_standins.apns import ApnsStandin
from tests.push_standins.fcm import FcmStandin
from tests.push_standins.keys import Tls, make_apns_key, make_rsa_key, make_tls

#: Long enough for a loaded 2-core machine, short enough for tests of hanging sends.
SEND_TIMEOUT_S = 5.0


class Sleeps:
    """A `sleep` for push/retry.py that records the waits between attempts and waits for none."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@dataclass(frozen=True)
class PushKeys:
    tls: Tls
    apns_key: Path
    service_account_key: str


def fcm_token(i: int | str) -> str:
    """A registration token in FCM's alphabet and length."""
    return f"standin{i}:APA91b" + "x" * 140


def apns_token(i: int) -> str:
    """A device token as APNs issues them: 32 bytes, hex."""
    return f"{i:064x}"


@pytest.fixture(scope="session")
def push_keys(tmp_path_factory: pytest.TempPathFactory) -> PushKeys:
    directory = tmp_path_factory.mktemp("push-keys")
    return PushKeys(make_tls(directory), make_apns_key(directory), make_rsa_key())


def new_fcm_standin(keys: PushKeys, monkeypatch: pytest.MonkeyPatch) -> FcmStandin:
    # firebase-admin's HTTP client takes no CA: httpx reads SSL_CERT_FILE when it is created.
    monkeypatch.setenv("SSL_CERT_FILE", str(keys.tls.ca))
    return FcmStandin(keys.tls.server_context(), keys.service_account_key)


def new_apns_standin(keys: PushKeys) -> ApnsStandin:
    return ApnsStandin(keys.tls.server_context(), keys.apns_key.read_text())


@pytest.fixture
async def fcm_standin(push_keys: PushKeys, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FcmStandin]:
    standin = new_fcm_standin(push_keys, monkeypatch)
    await standin.start()
    yield standin
    await standin.stop()


@pytest.fixture
async def apns_standin(push_keys: PushKeys) -> AsyncIterator[ApnsStandin]:
    standin = new_apns_standin(push_keys)
    await standin.start()
    yield standin
    await standin.stop()


def standin_fcm_pushkin(standin: FcmStandin, directory: Path, timeout_s: float = SEND_TIMEOUT_S) -> FcmPushkin:
    app = fcm_app(standin.write_service_account(directory / "service-account.json"))
    return FcmPushkin(app, timeout_s=timeout_s, endpoint=standin.url)


def standin_apns_pushkin(standin: ApnsStandin, keys: PushKeys, timeout_s: float = SEND_TIMEOUT_S) -> ApnsPushkin:
    return ApnsPushkin(standin.client(keys.apns_key, keys.tls.client_context()), timeout_s=timeout_s)


@pytest.fixture
async def fcm_pushkin(fcm_standin: FcmStandin, tmp_path: Path) -> AsyncIterator[FcmPushkin]:
    pushkin = standin_fcm_pushkin(fcm_standin, tmp_path)
    yield pushkin
    await pushkin.close()


@pytest.fixture
async def apns_pushkin(apns_standin: ApnsStandin, push_keys: PushKeys) -> AsyncIterator[ApnsPushkin]:
    pushkin = standin_apns_pushkin(apns_standin, push_keys)
    yield pushkin
    await pushkin.close()
