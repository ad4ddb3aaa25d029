"""Push end to end on the embedded default (`parley dev`'s app, in-process), with the FCM
stand-in as the provider: devices, notification settings, who gets a push for a message and
what it says, clearing after a read, and what the worker does with the providers' answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from parley.app.embedded import build_app
from parley.config import Settings
from parley.sdk import Account, AppTransport, Client, login, logout, register
from push.worker import DEAD_LETTERED, PRUNED
from tests.push_standins.fcm import FcmStandin
from tests.push_standins.fixtures import PushKeys, fcm_standin, fcm_token, push_keys  # noqa: F401 (fixtures)

pytestmark = pytest.mark.integration
BASE_URL = "http://parley.in-process"
PASSWORD = "correct horse"

Start = Callable[..., Awaitable[AppTransport]]


@pytest.fixture
async def start(tmp_path: Path, fcm_standin: FcmStandin) -> AsyncIterator[Start]:
    running: list[AppTransport] = []
    credentials = fcm_standin.write_service_account(tmp_path / "service-account.json")

    async def make(**settings: Any) -> AppTransport:
        settings = {"fcm_credentials": credentials, "fcm_endpoint": fcm_standin.url, **settings}
        transport = AppTransport(await build_app(Settings(data_dir=tmp_path / f"d{len(running)}", **settings)))
        await transport.start()
        running.append(transport)
        return transport

    yield make
    for transport in running:
        await transport.aclose()


async def call(app: AppTransport, method: str, path: str, who: Account, body: Any = None) -> tuple[int, Any]:
    resp = await app.request(method, BASE_URL + path, None if body is None else msgspec.json.encode(body),
                             {"Content-Type": "application/json", "Authorization": f"Bearer {who.token}"})
    return resp.status, msgspec.json.decode(resp.body) if resp.body else None


async def phone(app: AppTransport, who: Account, token: str) -> str:
    status, device = await call(app, "POST", "/v1/devices", who,
                                {"platform": "fcm", "token": token, "app_id": "chat.parley.android", "locale": "en"})
    assert status == 201, device
    return str(device["id"])


def pushes(standin: FcmStandin, token: str, kind: str = "message") -> list[dict[str, Any]]:
    """The pushes of `kind` the stand-in accepted for `token`, in order."""
    return [r.message for r in standin.received
            if r.message.get("token") == token and r.status == 200 and r.message["data"]["kind"] == kind]


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "not within the time"
        await asyncio.sleep(0.05)


async def quiet(seconds: float = 0.5) -> None:
    """Time for a push that should not come to come anyway."""
    await asyncio.sleep(seconds)


async def test_an_offline_member_gets_one_push_a_member_reading_the_conversation_none(start: Start,
                                                                                        fcm_standin: FcmStandin):
    app = await start()
    alice, bob, carol = [await register(BASE_URL, n, PASSWORD, transport=app) for n in ("alice", "bob", "carol")]
    await phone(app, bob, fcm_token("bob"))
    await phone(app, carol, fcm_token("carol"))
    async with await Client.connect(BASE_URL, alice, transport=app) as a, \
            await Client.connect(BASE_URL, carol, transport=app) as c:
        conv = (await a.request("conv.create", kind="group", title="Ops",
                                members=[bob.user_id, carol.user_id]))["conv"]["id"]
        first = await a.send(conv, "hello")
        await c.request("read", conv=conv, seq=first["seq"])  # carol is looking at it
        await a.send(conv, "lunch?")
        await eventually(lambda: len(pushes(fcm_standin, fcm_token("bob"))) == 2)
        await quiet()
    bob_pushes = pushes(fcm_standin, fcm_token("bob"))
    assert [p["android"]["notification"]["body"] for p in bob_pushes] == ["hello", "lunch?"]
    assert bob_pushes[-1]["android"]["notification"]["title"] == "alice in Ops"
    assert bob_pushes[-1]["android"]["collapse_key"] == conv
    # carol got the first (she had not read yet), not the one after her read
    assert [p["android"]["notification"]["body"] for p in pushes(fcm_standin, fcm_token("carol"))] == ["hello"]
    assert pushes(fcm_standin, fcm_token("alice")) == []


async def test_mentions_only_muted_and_previews_off(start: Start, fcm_standin: FcmStandin):
    app = await start()
    alice, bob = [await register(BASE_URL, n, PASSWORD, transport=app) for n in ("alice", "bob")]
    await phone(app, bob, fcm_token("bob"))
    async with await Client.connect(BASE_URL, alice, transport=app) as a:
        loud = (await a.request("conv.create", kind="group", title="Loud", members=[bob.user_id]))["conv"]["id"]
        muted = (await a.request("conv.create", kind="group", title="Muted", members=[bob.user_id]))["conv"]["id"]
        async with await Client.connect(BASE_URL, bob, transport=app) as laptop:  # settings sync to every session
            assert (await call(app, "PUT", "/v1/me/notifications", bob,
                               {"level": "mentions", "previews": False}))[0] == 200
            synced = await laptop.next_event("notify.settings")
            assert synced["conv"] is None and synced["settings"]["level"] == "mentions"
        status, _ = await call(app, "PUT", f"/v1/convs/{muted}/notifications", bob,
                               {"level": "all", "mute_until": 2**62})
        assert status == 200
        await a.send(loud, "nobody in particular")
        await a.send(muted, "muted, even with a mention", mentions=[bob.user_id])
        await a.send(loud, "@bob look", mentions=[bob.user_id])
        await eventually(lambda: len(pushes(fcm_standin, fcm_token("bob"))) == 1)
        await quiet()
    [only] = pushes(fcm_standin, fcm_token("bob"))
    assert only["android"]["notification"]["body"] == "New message"  # previews off
    assert "title" not in only["android"]["notification"]
    status, settings = await call(app, "GET", "/v1/me/notifications", bob)
    assert settings["default"] == {"level": "mentions", "mute_until": None, "previews": False}
    assert settings["convs"][muted]["mute_until"] == 2**62


async def test_the_badge_counts_unread_across_conversations_and_a_read_clears(start: Start,
                                                                               fcm_standin: FcmStandin):
    app = await start()
    alice, bob = [await register(BASE_URL, n, PASSWORD, transport=app) for n in ("alice", "bob")]
    token = fcm_token("bob")
    await phone(app, bob, token)
    async with await Client.connect(BASE_URL, alice, transport=app) as a:
        one = (await a.request("conv.create", kind="direct", members=[bob.user_id]))["conv"]["id"]
        two = (await a.request("conv.create", kind="group", title="Two", members=[bob.user_id]))["conv"]["id"]
        for n, (conv, text) in enumerate([(one, "a"), (two, "b"), (two, "c")], 1):
            last = await a.send(conv, text)
            # One at a time: the badge is what is unread when the push is decided.
            await eventually(lambda: len(pushes(fcm_standin, token)) == n)
        assert [p["data"]["badge"] for p in pushes(fcm_standin, token)] == ["1", "2", "3"]
        async with await Client.connect(BASE_URL, bob, transport=app) as b:  # bob reads on his laptop
            await b.request("read", conv=two, seq=last["seq"])
            await eventually(lambda: len(pushes(fcm_standin, token, "clear")) == 1)
    [clear] = pushes(fcm_standin, token, "clear")
    assert clear["data"]["kind"] == "clear" and clear["data"]["conv"] == two and clear["data"]["badge"] == "1"
    assert "notification" not in clear["android"] and clear["android"]["collapse_key"] == two


async def test_unregistered_prunes_the_device_and_logout_ends_it(start: Start, fcm_standin: FcmStandin):
    app = await start()
    alice, bob = [await register(BASE_URL, n, PASSWORD, transport=app) for n in ("alice", "bob")]
    await phone(app, bob, fcm_token("gone"))
    fcm_standin.script.fail(fcm_token("gone"), 404, "UNREGISTERED")
    pruned = PRUNED.labels("fcm", "UNREGISTERED")._value.get()
    async with await Client.connect(BASE_URL, alice, transport=app) as a:
        conv = (await a.request("conv.create", kind="direct", members=[bob.user_id]))["conv"]["id"]
        await a.send(conv, "anyone?")
        await eventually(lambda: PRUNED.labels("fcm", "UNREGISTERED")._value.get() == pruned + 1)
    assert (await call(app, "GET", "/v1/devices", bob))[1] == {"devices": []}
    await phone(app, bob, fcm_token("bob"))
    assert len((await call(app, "GET", "/v1/devices", bob))[1]["devices"]) == 1
    await logout(BASE_URL, bob.token, transport=app)
    again = await login(BASE_URL, "bob", PASSWORD, transport=app)  # another login: the old one's device is gone
    assert (await call(app, "GET", "/v1/devices", again))[1] == {"devices": []}


async def test_a_token_registered_by_another_user_moves_to_them(start: Start):
    app = await start()
    alice, bob = [await register(BASE_URL, n, PASSWORD, transport=app) for n in ("alice", "bob")]
    await phone(app, alice, "shared-phone")
    await phone(app, bob, "shared-phone")
    assert (await call(app, "GET", "/v1/devices", alice))[1] == {"devices": []}
    [device] = (await call(app, "GET", "/v1/devices", bob))[1]["devices"]
    assert device["current"] and device["platform"] == "fcm"
    assert (await call(app, "DELETE", f"/v1/devices/{device['id']}", alice))[0] == 404
    assert (await call(app, "DELETE", f"/v1/devices/{device['id']}", bob))[0] == 204


async def test_throttled_pushes_are_retried_then_delivered_and_exhausted_ones_dead_lettered(
        start: Start, fcm_standin: FcmStandin):
    app = await start(push_retry_attempts=3)
    alice, bob, carol = [await register(BASE_URL, n, PASSWORD, transport=app) for n in ("alice", "bob", "carol")]
    await phone(app, bob, fcm_token("bob"))
    await phone(app, carol, fcm_token("carol"))
    fcm_standin.script.fail(fcm_token("bob"), 429, "QUOTA_EXCEEDED", times=1, retry_after="0")
    fcm_standin.script.fail(fcm_token("bob"), 503, "UNAVAILABLE", times=1)
    fcm_standin.script.fail(fcm_token("carol"), 503, "UNAVAILABLE")
    dead = DEAD_LETTERED.labels("fcm")._value.get()
    async with await Client.connect(BASE_URL, alice, transport=app) as a:
        conv = (await a.request("conv.create", kind="group", title="G",
                                members=[bob.user_id, carol.user_id]))["conv"]["id"]
        await a.send(conv, "eventually")
        await eventually(lambda: DEAD_LETTERED.labels("fcm")._value.get() == dead + 1, timeout=20)
    assert [p["android"]["notification"]["body"] for p in pushes(fcm_standin, fcm_token("bob"))] == ["eventually"]
    tries = [r.status for r in fcm_standin.received if r.message.get("token") == fcm_token("carol")]
    assert tries == [503, 503, 503]


async def test_without_a_provider_push_is_off_and_registration_says_so(tmp_path: Path):
    app = AppTransport(await build_app(Settings(data_dir=tmp_path)))
    await app.start()
    try:
        bob = await register(BASE_URL, "bob", PASSWORD, transport=app)
        caps = msgspec.json.decode((await app.request("GET", BASE_URL + "/v1/client/capabilities", None, {})).body)
        assert caps["features"]["push"] is False
        status, error = await call(app, "POST", "/v1/devices", bob,
                                   {"platform": "fcm", "token": "t", "app_id": "a", "locale": "en"})
        assert status == 403 and "not configured" in error["error"]["message"]
    finally:
        await app.aclose()
