"""Push settings (parley/config.py): provider credentials, send timeout and retries from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from parley.config import Settings

APNS = {"PARLEY_APNS_KEY": "/keys/AuthKey.p8", "PARLEY_APNS_KEY_ID": "KEY123", "PARLEY_APNS_TEAM_ID": "TEAM456",
        "PARLEY_APNS_TOPIC": "chat.parley.app"}


@pytest.fixture(autouse=True)
def no_push_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*APNS, "PARLEY_FCM_CREDENTIALS", "PARLEY_APNS_SANDBOX", "PARLEY_PUSH_SEND_TIMEOUT_S",
                 "PARLEY_PUSH_RETRY_ATTEMPTS"):
        monkeypatch.delenv(name, raising=False)


def test_without_credentials_push_is_not_configured() -> None:
    s = Settings.from_env()
    assert not s.push_configured
    assert (s.fcm_credentials, s.apns_key, s.apns_sandbox, s.push_send_timeout_s, s.push_retry_attempts) == (
        None, None, False, 10.0, 5)


def test_fcm_credentials_alone_configure_push(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARLEY_FCM_CREDENTIALS", "/keys/firebase.json")
    s = Settings.from_env()
    assert s.push_configured and s.fcm_credentials == Path("/keys/firebase.json") and s.apns_key is None


def test_apns_token_auth_alone_configures_push(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in APNS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PARLEY_APNS_SANDBOX", "true")
    s = Settings.from_env()
    assert s.push_configured and s.fcm_credentials is None
    assert (s.apns_key, s.apns_key_id, s.apns_team_id, s.apns_topic, s.apns_sandbox) == (
        Path("/keys/AuthKey.p8"), "KEY123", "TEAM456", "chat.parley.app", True)


def test_half_an_apns_configuration_is_refused_naming_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARLEY_APNS_KEY", "/keys/AuthKey.p8")
    monkeypatch.setenv("PARLEY_APNS_TOPIC", "chat.parley.app")
    with pytest.raises(ValueError, match="PARLEY_APNS_KEY_ID, PARLEY_APNS_TEAM_ID"):
        Settings.from_env()


def test_send_timeout_and_attempts_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARLEY_PUSH_SEND_TIMEOUT_S", "2.5")
    monkeypatch.setenv("PARLEY_PUSH_RETRY_ATTEMPTS", "3")
    s = Settings.from_env()
    assert (s.push_send_timeout_s, s.push_retry_attempts) == (2.5, 3)


@pytest.mark.parametrize("name, value", [("PARLEY_PUSH_SEND_TIMEOUT_S", "0"), ("PARLEY_PUSH_RETRY_ATTEMPTS", "0")])
def test_a_send_without_time_or_attempts_is_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError):
        Settings.from_env()
