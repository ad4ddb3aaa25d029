"""Call pushes end to end on the embedded default (`parley dev`'s app, in-process), with the
LiveKit stand-in as its LiveKit and the APNs or FCM stand-in as the provider: a callee with no
live session is rung on their phone (APNs: a VoIP push to the PushKit token on the `.voip` topic;
FCM: a high-priority data message), the ring is cancelled when they decline or answer elsewhere,
and a ring that ends unanswered (the caller hung up first, or the ring timed out) is followed by
a missed-call push like a message's; also when the push decision restarted while the call rang."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from parley.app.embedded import build_app
from parley.config import Settings
from parley.sdk import Account, AppTransport, Client, call_action, register, register_device, start_call
from tests.integration.test_push_pipeline import BASE_URL, PASSWORD, eventually, quiet
from tests.livekit_standin import StandInThread
from tests.push_standins.apns import ApnsStandin
from tests.push_standins.fcm import FcmStandin
from tests.push_standins.fixtures import (PushKeys, apns_standin, apns_token, fcm_standin, fcm_token,  # noqa: F401
                                          push_keys)
from tests.push_standins.keys import APNS_KEY_ID, APNS_TEAM_ID, APNS_TOPIC

pytestmark = pytest.mark.integration


@dataclass
class Push:
    """One push a stand-in accepted, as the test compares them across providers."""

    kind: str
    call_id: str | None
    #: APNs: the push type and topic; FCM: the Android priority.
    channel: tuple[str, ...]
    #: The notification's text; None for a data (or VoIP) push the app handles itself.
    text: str | None
    #: What it replaces on the phone: `apns-collapse-id`, FCM's `collapse_key`.
    collapse: str


@dataclass
class Phone:
    """Bob's phone on one provider: what it registers and what it was sent."""

    provider: str
    apns: ApnsStandin | None
    fcm: FcmStandin | None

    async def register(self, app: AppTransport, who: Account) -> None:
        if self.provider == "apns":
            # An iPhone: its ordinary token (messages) and its PushKit token (calls).
            await register_device(BASE_URL, who.token, "apns", apns_token(1), APNS_TOPIC, transport=app)
            await register_device(BASE_URL, who.token, "apns_voip", apns_token(2), APNS_TOPIC, transport=app)
        else:
            await register_device(BASE_URL, who.token, "fcm", fcm_token("bob"), "chat.parley.android", transport=app)

    def pushes(self, kind: str) -> list[Push]:
        """The pushes of `kind` accepted for bob, in order (APNs: ordinary token, then PushKit's)."""
        if self.apns is not None:
            return [Push(r.payload["kind"], r.payload.get("call_id"),
                         (r.token, r.headers["apns-push-type"], r.headers["apns-topic"], r.headers["apns-priority"]),
                         r.payload.get("aps", {}).get("alert", {}).get("body"), r.headers["apns-collapse-id"])
                    for r in self.apns.received if r.status == 200 and r.payload.get("kind") == kind]
        assert self.fcm is not None
        return [Push(m["data"]["kind"], m["data"].get("call_id"), (m["android"]["priority"],),
                     m["android"].get("notification", {}).get("body"), m["android"]["collapse_key"])
                for r in self.fcm.received if r.status == 200 and (m := r.message)["data"]["kind"] == kind]

    def ring_channel(self) -> tuple[str, ...]:
        """Where a ring and its cancel go: PushKit (VoIP push type, `.voip` topic, priority 10),
        or an FCM data message at high priority."""
        return (apns_token(2), "voip", APNS_TOPIC + ".voip", "10") if self.provider == "apns" else ("high",)

    def message_channel(self) -> tuple[str, ...]:
        """Where a missed call goes: an alert to the ordinary token, or an FCM notification."""
        return (apns_token(1), "alert", APNS_TOPIC, "10") if self.provider == "apns" else ("high",)


Start = Callable[..., Awaitable[tuple[AppTransport, Phone]]]


@pytest.fixture(params=["apns", "fcm"])
async def start(request: pytest.FixtureRequest, tmp_path: Path, push_keys: PushKeys,  # noqa: F811
                fcm_standin: FcmStandin, apns_standin: ApnsStandin,  # noqa: F811
                livekit: StandInThread) -> AsyncIterator[Start]:
    """An embedded app with calls on (the LiveKit stand-in) and one push provider, a stand-in
    (fcm_standin also points TLS at the stand-ins' CA). `restarting`: that app is closed first
    and the new one opens its data, as `parley dev` started again."""
    running: dict[AppTransport, Path] = {}
    numbers = itertools.count()
    if request.param == "apns":
        provider: dict[str, Any] = dict(apns_key=push_keys.apns_key, apns_key_id=APNS_KEY_ID,
                                        apns_team_id=APNS_TEAM_ID, apns_topic=APNS_TOPIC, apns_sandbox=True,
                                        apns_endpoint=f"127.0.0.1:{apns_standin.port}")
        phone = Phone("apns", apns_standin, None)
    else:
        provider = dict(fcm_credentials=fcm_standin.write_service_account(tmp_path / "service-account.json"),
                        fcm_endpoint=fcm_standin.url)
        phone = Phone("fcm", None, fcm_standin)

    async def make(restarting: AppTransport | None = None, **settings: Any) -> tuple[AppTransport, Phone]:
        data_dir = tmp_path / f"d{next(numbers)}"
        if restarting is not None:
            data_dir = running.pop(restarting)
            await restarting.aclose()
        app = AppTransport(await build_app(Settings(
            data_dir=data_dir, livekit_url=livekit.standin.url,
            livekit_api_key=livekit.standin.api_key, livekit_api_secret=livekit.standin.api_secret,
            **provider, **settings)))
        await app.start()
        running[app] = data_dir
        return app, phone

    yield make
    for app in running:
        await app.aclose()


async def calling(app: AppTransport, phone: Phone) -> tuple[Account, Account, str, str]:
    """alice calls bob, who has no live session, in their direct conversation: (alice, bob,
    the conversation, the call) once bob's phone rang."""
    alice, bob = [await register(BASE_URL, n, PASSWORD, transport=app) for n in ("alice", "bob")]
    await phone.register(app, bob)
    async with await Client.connect(BASE_URL, alice, transport=app) as a:
        conv = (await a.request("conv.create", kind="direct", members=[bob.user_id]))["conv"]["id"]
    call = (await start_call(BASE_URL, alice.token, conv, "video", device="alice-phone", transport=app))["call"]["id"]
    await eventually(lambda: len(phone.pushes("call")) == 1)
    [ring] = phone.pushes("call")
    assert (ring.call_id, ring.channel, ring.text) == (call, phone.ring_channel(), None)
    return alice, bob, conv, call


async def cancelled(phone: Phone, call: str) -> None:
    """The ring's cancel arrives, once, where the ring went."""
    await eventually(lambda: len(phone.pushes("call_cancel")) == 1)
    [cancel] = phone.pushes("call_cancel")
    assert (cancel.call_id, cancel.channel) == (call, phone.ring_channel())


async def test_declining_cancels_the_ring_and_is_no_missed_call(start: Start) -> None:
    app, phone = await start()
    _, bob, _, call = await calling(app, phone)
    # The phone's app wakes for the ring and declines through REST: its other devices stop.
    await call_action(BASE_URL, bob.token, call, "decline", device="phone", transport=app)
    await cancelled(phone, call)
    await quiet()
    assert phone.pushes("message") == []  # a declined call is no missed call, nor its record a message


async def test_answering_elsewhere_cancels_the_ring(start: Start) -> None:
    app, phone = await start()
    alice, bob, _, call = await calling(app, phone)
    await call_action(BASE_URL, bob.token, call, "join", device="laptop", transport=app)
    await cancelled(phone, call)
    await call_action(BASE_URL, alice.token, call, "end", device="alice-phone", transport=app)
    await quiet()
    assert len(phone.pushes("call_cancel")) == 1 and phone.pushes("message") == []


@pytest.mark.parametrize("give_up", ["caller hangs up", "ring times out"])
async def test_a_ring_that_ends_unanswered_is_cancelled_and_pushed_as_a_missed_call(start: Start,
                                                                                   give_up: str) -> None:
    app, phone = await start(call_ring_timeout_s=2 if give_up == "ring times out" else 45)
    alice, _, conv, call = await calling(app, phone)
    if give_up == "caller hangs up":
        await call_action(BASE_URL, alice.token, call, "leave", device="alice-phone", transport=app)
    await cancelled(phone, call)
    await eventually(lambda: len(phone.pushes("message")) == 1)
    await quiet()
    [missed] = phone.pushes("message")  # one: the call's record pushes nothing of its own
    assert (missed.call_id, missed.channel, missed.text) == (call, phone.message_channel(), "Missed call from alice")
    assert missed.collapse == conv  # replaced by the conversation's next message push, as messages are


async def test_a_ring_the_push_decision_restarted_during_is_still_cancelled_and_pushed_as_missed(
        start: Start) -> None:
    app, phone = await start()
    alice, _, conv, call = await calling(app, phone)
    # The decision that rang bob's phone is gone; the one started again never saw the ring start.
    app, _ = await start(restarting=app)
    await call_action(BASE_URL, alice.token, call, "leave", device="alice-phone", transport=app)
    await cancelled(phone, call)
    await eventually(lambda: len(phone.pushes("message")) == 1)
    await quiet()
    [missed] = phone.pushes("message")
    assert (missed.call_id, missed.channel, missed.text) == (call, phone.message_channel(), "Missed call from alice")
    assert len(phone.pushes("call")) == 1  # and it was not rung again
