"""The SDK's push calls (parley/sdk/devices.py) through its in-process transport against
`parley dev`'s app with FCM configured: devices registered, listed and deleted, notification
settings read and written per account and per conversation, typed; refusals as typed errors."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from parley.app.embedded import build_app
from parley.config import Settings
from parley.errors import Forbidden, NotFound
from parley.sdk import (
    AllNotificationSettings, AppTransport, Client, NotificationSettings, PushDevice, delete_device,
    follow_account_settings, list_devices, notification_settings, register, register_device,
    set_notification_settings,
)
from tests.push_standins.keys import make_rsa_key

BASE_URL = "http://parley.in-process"
PASSWORD = "correct horse"


def service_account(path: Path) -> Path:
    """Credentials firebase-admin accepts; nothing here sends a push, so they sign in nowhere."""
    path.write_text(json.dumps({"type": "service_account", "project_id": "p", "private_key_id": "k",
                                "private_key": make_rsa_key(), "client_email": "push@p.iam.gserviceaccount.com",
                                "client_id": "1", "token_uri": "http://127.0.0.1:9/token"}))
    return path


@pytest.fixture
async def transport(tmp_path: Path) -> AsyncIterator[AppTransport]:
    settings = Settings(data_dir=tmp_path / "data", fcm_credentials=service_account(tmp_path / "account.json"))
    async with AppTransport(await build_app(settings)) as app:
        yield app


async def test_a_device_is_registered_listed_and_deleted(transport: AppTransport) -> None:
    bob = await register(BASE_URL, "bob", PASSWORD, transport=transport)
    phone = await register_device(BASE_URL, bob.token, "apns", "ab" * 32, "chat.parley.ios", "fr",
                                  transport=transport)
    assert phone == PushDevice(id=phone.id, platform="apns", app_id="chat.parley.ios", locale="fr",
                               created_at=phone.created_at, current=True)
    voip = await register_device(BASE_URL, bob.token, "apns_voip", "cd" * 32, "chat.parley.ios", transport=transport)
    again = await register_device(BASE_URL, bob.token, "apns", "ab" * 32, "chat.parley.ios", "de",
                                  transport=transport)
    assert (again.id, again.locale) == (phone.id, "de")  # the same token: the same device, updated
    assert sorted(d.id for d in await list_devices(BASE_URL, bob.token, transport=transport)) == sorted(
        [phone.id, voip.id])
    await delete_device(BASE_URL, bob.token, phone.id, transport=transport)
    assert [d.id for d in await list_devices(BASE_URL, bob.token, transport=transport)] == [voip.id]
    with pytest.raises(NotFound):
        await delete_device(BASE_URL, bob.token, phone.id, transport=transport)


async def test_notification_settings_per_account_and_per_conversation(transport: AppTransport) -> None:
    alice, bob = [await register(BASE_URL, n, PASSWORD, transport=transport) for n in ("alice", "bob")]
    assert await notification_settings(BASE_URL, bob.token, transport=transport) == AllNotificationSettings(
        default=NotificationSettings())
    async with await Client.connect(BASE_URL, alice, transport=transport) as a:
        conv = (await a.request("conv.create", kind="group", title="G", members=[bob.user_id]))["conv"]["id"]
    quiet = NotificationSettings(level="mentions", previews=False)
    muted = NotificationSettings(mute_until=2**62)
    await set_notification_settings(BASE_URL, bob.token, quiet, transport=transport)
    await set_notification_settings(BASE_URL, bob.token, muted, conv=conv, transport=transport)
    assert await notification_settings(BASE_URL, bob.token, transport=transport) == AllNotificationSettings(
        default=quiet, convs={conv: muted})
    await follow_account_settings(BASE_URL, bob.token, conv, transport=transport)
    assert (await notification_settings(BASE_URL, bob.token, transport=transport)).convs == {}
    with pytest.raises(NotFound):  # not a conversation of the caller
        await set_notification_settings(BASE_URL, bob.token, muted, conv="c-nowhere", transport=transport)


async def test_without_a_provider_registering_a_device_is_refused(tmp_path: Path) -> None:
    async with AppTransport(await build_app(Settings(data_dir=tmp_path))) as app:
        bob = await register(BASE_URL, "bob", PASSWORD, transport=app)
        with pytest.raises(Forbidden) as refused:
            await register_device(BASE_URL, bob.token, "fcm", "t", "chat.parley.android", transport=app)
        assert refused.value.http_status == 403
