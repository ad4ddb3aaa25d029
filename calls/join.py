"""What a device gets to enter a call's media, from Settings: the answer to `call.start` and
`call.join` (LiveKit URL, room, token, ICE servers, the video subscribe cap: the gateway mints it
from the writer's grant) and what `GET /v1/client/capabilities` says about calls."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from calls.tokens import CallRoom, Role, TokenMinter, room_name
from calls.turn import IceServer, ice_servers
from parley.config import Settings
from parley.events import CallView, Ok
from parley.frames import Media


class CallJoin(msgspec.Struct, frozen=True, kw_only=True):
    url: str
    room: str
    token: str
    role: Role
    ice_servers: tuple[IceServer, ...]
    #: Video tracks the client subscribes to at most (LiveKit cannot enforce it: the client does).
    max_video_subscriptions: int


class CallJoinResult(Ok):
    """The `ok` answer of call.start and call.join as the client gets it: the call, and how to
    enter its media (the gateway's, from the writer's grant)."""

    call: CallView
    join: CallJoin


class CallCapabilities(msgspec.Struct, frozen=True, kw_only=True):
    calls: bool
    media: tuple[Media, ...] = ()
    max_participants: int = 0
    max_video_subscriptions: int = 0


def capabilities(settings: Settings) -> CallCapabilities:
    minter = JoinMinter.from_settings(settings)
    return CallCapabilities(calls=False) if minter is None else minter.capabilities()


@dataclass(frozen=True, slots=True)
class JoinMinter:
    livekit_url: str
    tokens: TokenMinter
    stun_urls: tuple[str, ...]
    turn_urls: tuple[str, ...]
    turn_secret: str | None
    turn_ttl_s: int
    max_video_subscriptions: int
    max_participants: int

    @classmethod
    def from_settings(cls, settings: Settings) -> JoinMinter | None:
        """None when calls are off: no LiveKit URL, key and secret."""
        if not (settings.livekit_url and settings.livekit_api_key and settings.livekit_api_secret):
            return None
        return cls(livekit_url=settings.livekit_url,
                   tokens=TokenMinter(api_key=settings.livekit_api_key, api_secret=settings.livekit_api_secret,
                                      ttl_s=settings.call_token_ttl_s, empty_timeout_s=settings.call_ring_timeout_s),
                   stun_urls=settings.stun_urls, turn_urls=settings.turn_urls, turn_secret=settings.turn_secret,
                   turn_ttl_s=settings.turn_ttl_s, max_video_subscriptions=settings.call_max_video_subscriptions,
                   max_participants=settings.call_max_participants)

    def capabilities(self) -> CallCapabilities:
        """The instance's defaults (a conversation may say otherwise)."""
        return CallCapabilities(calls=True, media=tuple(Media), max_participants=self.max_participants,
                                max_video_subscriptions=self.max_video_subscriptions)

    def ice_servers(self, user: str, now_s: int) -> tuple[IceServer, ...]:
        return ice_servers(stun_urls=self.stun_urls, turn_urls=self.turn_urls, turn_secret=self.turn_secret,
                           user=user, now_s=now_s, ttl_s=self.turn_ttl_s)

    def join(self, call: CallRoom, *, user: str, device: str, name: str, role: Role, now_s: int,
             max_video_subscriptions: int | None = None) -> CallJoin:
        """`max_video_subscriptions`: the conversation's cap, if it has one (else the instance's)."""
        return CallJoin(
            url=self.livekit_url, room=room_name(call.id), role=role,
            token=self.tokens.mint(call, user=user, device=device, name=name, role=role),
            ice_servers=self.ice_servers(user, now_s),
            max_video_subscriptions=(self.max_video_subscriptions if max_video_subscriptions is None
                                     else max_video_subscriptions),
        )
