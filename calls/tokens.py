"""LiveKit join tokens (livekit-api's AccessToken): one room per call, one identity per user and
device, grants no wider than the participant's role, and the room's limits carried in the token
(LiveKit creates the room from them at the first join, so Parley never creates rooms itself).

What a token allows, by role and media:
- a speaker in an audio call publishes its microphone only;
- a speaker in a video call publishes camera and microphone, and may share its screen (with its
  sound): screen sharing is a video source, so an audio call never carries video, and a video
  call's participants may show what they see without a second call;
- a listener (a channel's subscriber in a live audio room) publishes nothing;
- everyone subscribes. Nobody is room admin, nobody updates its own metadata, name or attributes
  (the name is Parley's display name), and nobody publishes data: Parley's messages carry the
  chat, and data channel messages would bypass its moderation.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from parley.frames import Media

if TYPE_CHECKING:
    from livekit.api import VideoGrants

#: A LiveKit server may serve more than Parley: its rooms carry this prefix, and webhooks for
#: other rooms are none of Parley's business.
ROOM_PREFIX = "parley-call-"
#: user ids never contain it (parley/ids.py: base32), so the first one splits an identity.
IDENTITY_SEPARATOR = ":"
#: After the last participant left, LiveKit keeps the room this long: enough for a lone
#: participant's full reconnection. Parley closes the room itself when the call ends.
DEPARTURE_TIMEOUT_S = 20

PUBLISH_SOURCES: dict[Media, tuple[str, ...]] = {
    Media.AUDIO: ("microphone",),
    Media.VIDEO: ("camera", "microphone", "screen_share", "screen_share_audio"),
}


class CallRoom(Protocol):
    """What a token needs of a call: the stored call (parley.records.Call) and the view the
    writer answers with (parley.events.CallView) both have it."""

    @property
    def id(self) -> str: ...

    @property
    def media(self) -> Media: ...

    @property
    def max_participants(self) -> int: ...


class Role(StrEnum):
    SPEAKER = "speaker"    # publishes what the call's media allows
    LISTENER = "listener"  # subscribes only: a channel's subscribers in a live room


def room_name(call_id: str) -> str:
    return ROOM_PREFIX + call_id


def call_of_room(room: str) -> str | None:
    """The call a room belongs to; None for rooms that are not Parley's."""
    call_id = room.removeprefix(ROOM_PREFIX)
    return call_id if call_id and call_id != room else None


def identity(user: str, device: str) -> str:
    """One LiveKit participant per user and device: a second device of a user does not kick the
    first out of the room (LiveKit admits one connection per identity)."""
    if IDENTITY_SEPARATOR in user or not user or not device:
        raise ValueError(f"no identity for user {user!r} and device {device!r}")
    return f"{user}{IDENTITY_SEPARATOR}{device}"


def parse_identity(value: str) -> tuple[str, str] | None:
    """(user, device) of a Parley participant; None for anything else in the room (an egress,
    an agent, a SIP participant)."""
    user, sep, device = value.partition(IDENTITY_SEPARATOR)
    return (user, device) if sep and user and device else None


def video_grants(room: str, media: Media, role: Role) -> VideoGrants:
    # livekit-api is imported where a token is made, not with this module (~5.5 MiB of RSS): the
    # room and identity names here are in every process of every role, LiveKit configured or not.
    from livekit.api import VideoGrants

    speaker = role is Role.SPEAKER
    return VideoGrants(
        room_join=True, room=room,
        can_subscribe=True,
        can_publish=speaker,
        can_publish_sources=list(PUBLISH_SOURCES[media]) if speaker else None,
        can_publish_data=False,
        can_update_own_metadata=False,
        room_admin=False, room_create=False, room_list=False, room_record=False,
        hidden=False, recorder=False, agent=False, ingress_admin=False,
    )


@dataclass(frozen=True, slots=True)
class TokenMinter:
    """Signs join tokens with the LiveKit API key and secret.

    `empty_timeout_s` is how long LiveKit keeps a room nobody entered: the ring timeout, since an
    unanswered call is over by then."""

    api_key: str
    api_secret: str
    ttl_s: int
    empty_timeout_s: int

    def mint(self, call: CallRoom, *, user: str, device: str, name: str, role: Role) -> str:
        """A token to enter `call`'s room for `ttl_s`. LiveKit refreshes the token of a connected
        client by itself, so a short TTL bounds only how late a token can be first used: removing
        someone from a call is RoomService's job (calls/livekit.py), not the token's."""
        from livekit.api import AccessToken
        from livekit.protocol.room import RoomConfiguration

        room = room_name(call.id)
        config = RoomConfiguration(name=room, max_participants=call.max_participants,
                                   empty_timeout=self.empty_timeout_s, departure_timeout=DEPARTURE_TIMEOUT_S)
        return (AccessToken(self.api_key, self.api_secret)
                .with_identity(identity(user, device))
                .with_name(name)
                .with_kind("standard")
                .with_ttl(datetime.timedelta(seconds=self.ttl_s))
                .with_grants(video_grants(room, call.media, role))
                .with_room_config(config)
                .to_jwt())
