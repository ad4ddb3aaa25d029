"""calls/ against the LiveKit stand-in over loopback: the adapter's requests as LiveKit sees them
(protobuf, bearer tokens with the narrowest grants), its timeouts and error mapping, the
stand-in's own refusals, and a call's life reconciled from the webhooks LiveKit would send."""

from __future__ import annotations

import datetime
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from livekit.api import AccessToken, VideoGrants

from calls import state as S
from calls.livekit import LiveKitRoomService
from parley.events import CallEnded, CallJoined, CallLeft
from parley.frames import CallState, EndReason, Media
from calls.tokens import identity, room_name
from calls.webhooks import WebhookIntake
from parley.app.localservers import free_port
from parley.errors import Internal, Unauthorized, Unavailable
from tests.livekit_standin import LiveKitStandIn

pytestmark = pytest.mark.integration

KEY, SECRET = "APIintegration", "an-integration-secret-of-32-chars!!"
ROOM = room_name("k1")


@pytest.fixture
async def standin() -> AsyncIterator[LiveKitStandIn]:
    server = LiveKitStandIn(KEY, SECRET)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def rooms(standin: LiveKitStandIn) -> AsyncIterator[LiveKitRoomService]:
    service = LiveKitRoomService(standin.url, KEY, SECRET, timeout_s=0.5)
    yield service
    await service.aclose()


async def test_the_adapter_asks_in_protobuf_with_the_narrowest_grants(standin: LiveKitStandIn,
                                                                      rooms: LiveKitRoomService) -> None:
    standin.join(ROOM, "uann:phone")
    await rooms.list_participants(ROOM)
    await rooms.remove_participant(ROOM, "uann:phone")
    await rooms.delete_room(ROOM)
    assert [(a.method, a.request, a.content_type) for a in standin.asked] == [
        ("ListParticipants", {"room": ROOM}, "application/protobuf"),
        ("RemoveParticipant", {"room": ROOM, "identity": "uann:phone"}, "application/protobuf"),
        ("DeleteRoom", {"room": ROOM}, "application/protobuf"),
    ]
    admin, remove, delete = (a.grants for a in standin.asked)
    assert admin["roomAdmin"] is True and admin["room"] == ROOM and not admin.get("roomCreate")
    assert remove["roomAdmin"] is True and remove["room"] == ROOM
    assert delete["roomCreate"] is True and not delete.get("roomAdmin")


async def test_a_slow_livekit_is_unavailable_within_the_timeout(standin: LiveKitStandIn,
                                                                 rooms: LiveKitRoomService) -> None:
    standin.delay_s = 2
    started = time.monotonic()
    with pytest.raises(Unavailable) as failed:
        await rooms.list_participants(ROOM)
    assert time.monotonic() - started < 1.5 and failed.value.retry_after_ms


@pytest.mark.parametrize("code, error", [("unavailable", Unavailable), ("internal", Unavailable),
                                         ("invalid_argument", Internal), ("permission_denied", Internal)])
async def test_livekits_errors_become_parley_errors(standin: LiveKitStandIn, rooms: LiveKitRoomService, code: str,
                                                    error: type[Exception]) -> None:
    standin.fail_with = code
    with pytest.raises(error):
        await rooms.remove_participant(ROOM, "uann:phone")


async def test_an_unreachable_livekit_is_unavailable() -> None:
    service = LiveKitRoomService(f"http://127.0.0.1:{free_port()}", KEY, SECRET, timeout_s=0.5)
    try:
        with pytest.raises(Unavailable):
            await service.delete_room(ROOM)
    finally:
        await service.aclose()


# ---- the stand-in refuses what LiveKit refuses ---------------------------------------------


def bearer(secret: str = SECRET, ttl_s: int = 60, room: str = ROOM, admin: bool = True) -> dict[str, str]:
    token = (AccessToken(KEY, secret).with_grants(VideoGrants(room_admin=admin, room=room))
             .with_ttl(datetime.timedelta(seconds=ttl_s)).to_jwt())
    return {"Authorization": f"Bearer {token}"}


# Tokens are minted in the test, not at collection: a suite running longer than their TTL
# would otherwise hand an expired token to the cases that test something else.
@pytest.mark.parametrize("token, status, code", [
    (None, 401, "unauthenticated"),
    ({"secret": "a-secret-that-livekit-does-not-know!"}, 401, "unauthenticated"),
    ({"ttl_s": -1}, 401, "unauthenticated"),
    ({"room": room_name("another")}, 403, "permission_denied"),
    ({"admin": False}, 403, "permission_denied"),
], ids=["no token", "wrong secret", "expired", "another room", "not admin"])
async def test_the_standin_refuses_tokens_livekit_would_refuse(standin: LiveKitStandIn, token: dict[str, Any] | None,
                                                                status: int, code: str) -> None:
    headers = {} if token is None else bearer(**token)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{standin.url}/twirp/livekit.RoomService/ListParticipants", json={"room": ROOM},
                             headers=headers) as resp:
            assert resp.status == status
            assert (await resp.json())["code"] == code


async def test_the_standin_speaks_twirp_json_too(standin: LiveKitStandIn) -> None:
    standin.join(ROOM, "uann:phone", "Ann")
    async with aiohttp.ClientSession() as http:
        for body in ({"room": ROOM}, {"room": ROOM, "unknown_field": 1}):
            async with http.post(f"{standin.url}/twirp/livekit.RoomService/ListParticipants", json=body,
                                 headers=bearer()) as resp:
                if "unknown_field" in body:
                    assert resp.status == 400 and (await resp.json())["code"] == "malformed"
                    continue
                assert resp.status == 200 and resp.content_type == "application/json"
                listed = (await resp.json())["participants"]
                assert [(p["identity"], p["name"]) for p in listed] == [("uann:phone", "Ann")]
        async with http.post(f"{standin.url}/twirp/livekit.RoomService/NoSuchMethod", json={},
                             headers=bearer()) as resp:
            assert resp.status == 404 and (await resp.json())["code"] == "bad_route"


# ---- a call reconciled from LiveKit's webhooks -----------------------------------------------


async def test_a_call_lives_and_ends_by_the_webhooks_livekit_sends(standin: LiveKitStandIn,
                                                                   rooms: LiveKitRoomService) -> None:
    """ann calls bob; both connect; ann moves from phone to laptop; moderation removes bob; every
    webhook is delivered twice and a tampered one is refused; the call ends when the last one
    leaves, and closing its room changes nothing more."""
    intake = WebhookIntake(KEY, SECRET)
    out = S.start(call_id="k1", conv="c1", media=Media.VIDEO, initiator="uann", device="phone", callees=["ubob"],
                  direct=False, max_participants=4, ring_timeout_ms=45_000, now=0)
    call = S.join(out.call, "ubob", "tab", 1_000).call
    announced: list[object] = []

    def deliver_all(now: int) -> None:
        nonlocal call
        pending, standin.webhooks[:] = list(standin.webhooks), []
        for ev in pending:
            body, token = standin.signed(ev)
            with pytest.raises(Unauthorized):
                intake.receive(body.replace(b"k1", b"k2"), token)
            for _ in range(2):  # LiveKit may deliver the same webhook again
                room_event = intake.receive(body, token)
                if room_event is not None:
                    step = S.reconcile(call, room_event, now)
                    call = step.call
                    announced.extend(step.events)

    standin.join(ROOM, identity("uann", "phone"))
    standin.join(ROOM, identity("ubob", "tab"))
    deliver_all(2_000)
    assert [type(e) for e in announced] == [CallJoined, CallJoined]
    standin.join(ROOM, identity("uann", "laptop"))
    await rooms.remove_participant(ROOM, identity("uann", "phone"))
    deliver_all(3_000)
    assert len(announced) == 2 and {s.device for s in call.present if s.user == "uann"} == {"laptop"}
    removal = S.remove(call, "ubob", 4_000)
    call = removal.call
    for session in removal.remove:
        assert await rooms.remove_participant(ROOM, identity(session.user, session.device))
    deliver_all(4_500)  # its left webhook: already gone
    assert call.state is CallState.ACTIVE and "ubob" not in call.in_call
    await rooms.remove_participant(ROOM, identity("uann", "laptop"))  # ann's last device goes
    deliver_all(61_000)
    assert isinstance(announced[-2], CallLeft) and isinstance(announced[-1], CallEnded)
    assert call.end_reason is EndReason.HANGUP and call.duration == 60_000
    assert await rooms.delete_room(ROOM)
    deliver_all(62_000)  # room_finished: the call had ended
    assert sum(isinstance(e, CallEnded) for e in announced) == 1
    assert standin.rooms == {}
