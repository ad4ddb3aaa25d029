"""What Parley asks of LiveKit's RoomService, as a port, and its adapter over livekit-api.

Parley never creates rooms (the first join does, from the configuration in its token); it lists
the rooms and who is in a call's room (the sweep for lost webhooks), removes a participant (a
member kicked, banned or suspended mid-call: LiveKit refreshes a connected client's token by
itself, so only the server can put someone out), and deletes the room of a call that ended.
Each operation is idempotent: what is already gone is not an error. Every request is bounded by
a timeout, and LiveKit's failures become parley errors: Unavailable for what a retry may cure
(timeouts, transport, 5xx, overload), Internal for the rest (refused credentials, malformed
requests: a deployment or code defect).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Protocol, TypeVar

import aiohttp
import msgspec
from livekit.api import LiveKitAPI, TwirpError, TwirpErrorCode
from livekit.protocol.room import DeleteRoomRequest, ListParticipantsRequest, ListRoomsRequest, RoomParticipantIdentity

from parley.errors import Internal, ParleyError, Unavailable

#: Twirp codes a later attempt may get past.
_RETRYABLE = frozenset({TwirpErrorCode.UNAVAILABLE, TwirpErrorCode.DEADLINE_EXCEEDED, TwirpErrorCode.RESOURCE_EXHAUSTED,
                        TwirpErrorCode.INTERNAL, TwirpErrorCode.UNKNOWN, TwirpErrorCode.ABORTED,
                        TwirpErrorCode.CANCELED})
RETRY_AFTER_MS = 1000
_Reply = TypeVar("_Reply")


class RoomParticipant(msgspec.Struct, frozen=True, kw_only=True):
    identity: str
    sid: str
    name: str
    #: Unix seconds.
    joined_at: int


class LiveKitRooms(Protocol):
    async def list_rooms(self) -> list[str]:
        """The names of the rooms the server has now (every room, not only Parley's)."""
        ...

    async def list_participants(self, room: str) -> list[RoomParticipant]:
        """Who is in the room now; [] for a room that does not exist (nobody joined, or it closed)."""
        ...

    async def remove_participant(self, room: str, identity: str) -> bool:
        """Put a participant out of the room; False when it was not there."""
        ...

    async def delete_room(self, room: str) -> bool:
        """Close the room, disconnecting everyone in it; False when there was no such room."""
        ...

    async def aclose(self) -> None:
        ...


class LiveKitRoomService:
    """The port over livekit-api's RoomService (Twirp over HTTP, signed with the API key)."""

    def __init__(self, url: str, api_key: str, api_secret: str, *, timeout_s: float = 5.0) -> None:
        self._url, self._key, self._secret = url, api_key, api_secret
        self._timeout_s = timeout_s
        # aiohttp wants its session made inside the running loop: on first use.
        self._api: LiveKitAPI | None = None

    def _rooms(self) -> LiveKitAPI:
        if self._api is None:
            self._api = LiveKitAPI(self._url, self._key, self._secret,
                                   timeout=aiohttp.ClientTimeout(total=self._timeout_s))
        return self._api

    async def list_rooms(self) -> list[str]:
        reply = await self._ask("listing the rooms", self._rooms().room.list_rooms(ListRoomsRequest()))
        return [] if reply is None else [room.name for room in reply.rooms]

    async def list_participants(self, room: str) -> list[RoomParticipant]:
        reply = await self._ask(f"listing the participants of {room}",
                                self._rooms().room.list_participants(ListParticipantsRequest(room=room)))
        if reply is None:
            return []
        return [RoomParticipant(identity=p.identity, sid=p.sid, name=p.name, joined_at=p.joined_at)
                for p in reply.participants]

    async def remove_participant(self, room: str, identity: str) -> bool:
        request = RoomParticipantIdentity(room=room, identity=identity)
        removed = await self._ask(f"removing {identity} from {room}", self._rooms().room.remove_participant(request))
        return removed is not None

    async def delete_room(self, room: str) -> bool:
        deleted = await self._ask(f"deleting {room}", self._rooms().room.delete_room(DeleteRoomRequest(room=room)))
        return deleted is not None

    async def _ask(self, doing: str, request: Awaitable[_Reply]) -> _Reply | None:
        """LiveKit's reply, or None when it says there is no such room or participant."""
        try:
            async with asyncio.timeout(self._timeout_s):
                return await request
        except TwirpError as exc:
            if exc.code == TwirpErrorCode.NOT_FOUND:
                return None
            raise _parley_error(exc, doing) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _parley_error(exc, doing) from exc

    async def aclose(self) -> None:
        if self._api is not None:
            await self._api.aclose()
            self._api = None


def _parley_error(exc: TwirpError | aiohttp.ClientError | TimeoutError, doing: str) -> ParleyError:
    if isinstance(exc, TimeoutError):
        return Unavailable(f"LiveKit did not answer in time {doing}", retry_after_ms=RETRY_AFTER_MS)
    if isinstance(exc, aiohttp.ClientError):
        return Unavailable(f"LiveKit is unreachable {doing}: {exc}", retry_after_ms=RETRY_AFTER_MS)
    if exc.code in _RETRYABLE or exc.status >= 500:
        return Unavailable(f"LiveKit failed {doing}: {exc}", retry_after_ms=RETRY_AFTER_MS)
    return Internal(f"LiveKit refused {doing}: {exc}")
