"""The LiveKit contract: what Parley asks of LiveKit's RoomService (calls/livekit.py's port),
run unchanged against the stand-in (tests/livekit_standin.py) and against a real LiveKit.

A real LiveKit runs when PARLEY_TEST_LIVEKIT_URL, PARLEY_TEST_LIVEKIT_KEY and
PARLEY_TEST_LIVEKIT_SECRET are set (e.g. `livekit-server --dev`: ws://HOST:7880, devkey, secret);
without them those runs are skipped, with the reason. Participants enter a real room through
LiveKit's own client SDK (PyPI `livekit`), with tokens from calls/tokens.py."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import pytest

from calls import state as S
from calls.livekit import LiveKitRoomService, RoomParticipant
from parley.frames import Media
from calls.tokens import Role, TokenMinter, call_of_room, room_name
from parley.errors import Internal
from tests.livekit_standin import LiveKitStandIn

REAL_URL = os.environ.get("PARLEY_TEST_LIVEKIT_URL", "")
REAL_KEY = os.environ.get("PARLEY_TEST_LIVEKIT_KEY", "")
REAL_SECRET = os.environ.get("PARLEY_TEST_LIVEKIT_SECRET", "")


class Harness(Protocol):
    url: str
    api_key: str
    api_secret: str

    async def join(self, room: str, identity: str, name: str) -> str:
        """Put a participant into the room (created if need be); its sid."""
        ...


@dataclass
class StandInHarness:
    standin: LiveKitStandIn
    url: str = ""
    api_key: str = ""
    api_secret: str = ""

    def __post_init__(self) -> None:
        self.url, self.api_key, self.api_secret = self.standin.url, self.standin.api_key, self.standin.api_secret

    async def join(self, room: str, identity: str, name: str) -> str:
        return self.standin.join(room, identity, name).sid


@dataclass
class RealHarness:
    url: str
    api_key: str
    api_secret: str
    connected: list[Any] = field(default_factory=list)

    async def join(self, room: str, identity: str, name: str) -> str:
        rtc = pytest.importorskip("livekit.rtc", reason="pip install livekit: it puts participants into a real room")
        user, _, device = identity.partition(":")
        call = S.start(call_id=str(call_of_room(room)), conv="c", media=Media.AUDIO, initiator=user,
                       device=device, callees=(), direct=False, max_participants=8, ring_timeout_ms=45_000, now=0).call
        token = TokenMinter(self.api_key, self.api_secret, ttl_s=600, empty_timeout_s=45).mint(
            call, user=user, device=device, name=name, role=Role.SPEAKER)
        client = rtc.Room()
        await client.connect(self.url, token)
        self.connected.append(client)
        return str(client.local_participant.sid)

    async def close(self) -> None:
        for client in self.connected:
            with contextlib.suppress(Exception):  # the test may have put it out already
                await client.disconnect()


@pytest.fixture(params=["stand-in", "livekit"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    if request.param == "stand-in":
        standin = LiveKitStandIn("APIstandin", "a-stand-in-secret-of-32-characters!")
        await standin.start()
        yield StandInHarness(standin)
        await standin.stop()
        return
    if not (REAL_URL and REAL_KEY and REAL_SECRET):
        pytest.skip("no LiveKit here: set PARLEY_TEST_LIVEKIT_URL, _KEY and _SECRET to run the contract on a real one")
    real = RealHarness(REAL_URL, REAL_KEY, REAL_SECRET)
    yield real
    await real.close()


@pytest.fixture
async def rooms(harness: Harness) -> AsyncIterator[LiveKitRoomService]:
    service = LiveKitRoomService(harness.url, harness.api_key, harness.api_secret, timeout_s=5)
    yield service
    await service.aclose()


def fresh_room() -> str:
    return room_name(f"k{secrets.token_hex(6)}")


async def test_a_room_nobody_joined_has_no_participants(rooms: LiveKitRoomService) -> None:
    assert await rooms.list_participants(fresh_room()) == []


async def test_the_participants_of_a_room_are_listed_with_identity_sid_and_name(harness: Harness,
                                                                               rooms: LiveKitRoomService) -> None:
    room = fresh_room()
    ann = await harness.join(room, "uann:phone", "Ann")
    bob = await harness.join(room, "ubob:laptop", "Bob")
    listed = sorted(await rooms.list_participants(room), key=lambda p: p.identity)
    assert [(p.identity, p.sid, p.name) for p in listed] == [("uann:phone", ann, "Ann"), ("ubob:laptop", bob, "Bob")]
    assert all(isinstance(p, RoomParticipant) and p.joined_at > 0 for p in listed)


async def test_removing_a_participant_puts_out_that_one_only_and_once(harness: Harness,
                                                                      rooms: LiveKitRoomService) -> None:
    room = fresh_room()
    await harness.join(room, "uann:phone", "Ann")
    await harness.join(room, "ubob:laptop", "Bob")
    assert await rooms.remove_participant(room, "ubob:laptop") is True
    assert [p.identity for p in await rooms.list_participants(room)] == ["uann:phone"]
    assert await rooms.remove_participant(room, "ubob:laptop") is False
    assert await rooms.remove_participant(fresh_room(), "ubob:laptop") is False


async def test_deleting_a_room_disconnects_everyone_and_is_harmless_twice(harness: Harness,
                                                                          rooms: LiveKitRoomService) -> None:
    room = fresh_room()
    await harness.join(room, "uann:phone", "Ann")
    assert await rooms.delete_room(room) is True
    assert await rooms.list_participants(room) == []
    assert await rooms.delete_room(room) is False


async def test_rooms_are_listed_while_they_exist(harness: Harness, rooms: LiveKitRoomService) -> None:
    room, never = fresh_room(), fresh_room()
    await harness.join(room, "uann:phone", "Ann")
    listed = await rooms.list_rooms()
    assert room in listed and never not in listed
    await rooms.delete_room(room)
    assert room not in await rooms.list_rooms()


async def test_a_wrong_secret_is_refused_as_an_internal_error(harness: Harness) -> None:
    wrong = LiveKitRoomService(harness.url, harness.api_key, "not-the-secret-" * 3, timeout_s=5)
    try:
        with pytest.raises(Internal):
            await wrong.list_participants(fresh_room())
    finally:
        await wrong.aclose()
