"""The SDK's REST calls for push notifications: the caller's devices (a phone's push token,
`/v1/devices`) and notification settings, account-wide (`/v1/me/notifications`) and per
conversation (`/v1/convs/{id}/notifications`). Answers are typed; a refusal raises the
`parley.errors` class of its wire code, as rest.py's calls do (Forbidden when the server has no
push provider configured).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import msgspec

from parley.sdk.rest import rest_call
from parley.sdk.transport import Transport

#: fcm: an Android registration token; apns: an iPhone's APNs token; apns_voip: its PushKit
#: (VoIP) token, which takes calls only.
Platform = Literal["fcm", "apns", "apns_voip"]
Level = Literal["all", "mentions", "none"]


@dataclass(frozen=True)
class PushDevice:
    """A device as its owner sees it (the token is not echoed back)."""

    id: str
    platform: Platform
    #: The iOS bundle id or the Android package the token belongs to.
    app_id: str
    locale: str
    #: ms since the epoch
    created_at: int
    #: The login making the call registered it (its logout removes it).
    current: bool


@dataclass(frozen=True)
class NotificationSettings:
    """What a user wants pushed. In a direct conversation every message counts as a mention."""

    level: Level = "all"
    #: No pushes until this time (ms since the epoch); None: not muted.
    mute_until: int | None = None
    #: Off: a push says "New message" and nothing else.
    previews: bool = True


@dataclass(frozen=True)
class AllNotificationSettings:
    """The account's settings, and those of the conversations that have their own (which win)."""

    default: NotificationSettings
    convs: dict[str, NotificationSettings] = field(default_factory=dict)


async def register_device(base_url: str, token: str, platform: Platform, push_token: str, app_id: str,
                          locale: str = "en", *, transport: Transport | None = None) -> PushDevice:
    """POST /v1/devices: pushes for the caller go to `push_token` from now on. Registering a
    token again updates it; a token another user registered moves to the caller."""
    body = await rest_call(base_url, "POST", "/v1/devices", token,
                           {"platform": platform, "token": push_token, "app_id": app_id, "locale": locale},
                           transport=transport)
    return msgspec.convert(body, PushDevice)


async def list_devices(base_url: str, token: str, *, transport: Transport | None = None) -> list[PushDevice]:
    """GET /v1/devices: the caller's devices of logins still alive."""
    body = await rest_call(base_url, "GET", "/v1/devices", token, transport=transport)
    return msgspec.convert(body["devices"], list[PushDevice])


async def delete_device(base_url: str, token: str, device_id: str, *, transport: Transport | None = None) -> None:
    """DELETE /v1/devices/{id}: no more pushes to it; NotFound if the caller has no such device."""
    await rest_call(base_url, "DELETE", f"/v1/devices/{device_id}", token, transport=transport)


async def notification_settings(base_url: str, token: str, *,
                                transport: Transport | None = None) -> AllNotificationSettings:
    """GET /v1/me/notifications: the account's settings and every conversation's own."""
    return msgspec.convert(await rest_call(base_url, "GET", "/v1/me/notifications", token, transport=transport),
                           AllNotificationSettings)


async def set_notification_settings(base_url: str, token: str, settings: NotificationSettings, *,
                                    conv: str | None = None, transport: Transport | None = None) -> None:
    """PUT the account's settings, or with `conv` that conversation's (NotFound unless the caller
    is a member). Every session of the user is sent `notify.settings`."""
    path = "/v1/me/notifications" if conv is None else f"/v1/convs/{conv}/notifications"
    await rest_call(base_url, "PUT", path, token, msgspec.to_builtins(settings), transport=transport)


async def follow_account_settings(base_url: str, token: str, conv: str, *,
                                  transport: Transport | None = None) -> None:
    """DELETE /v1/convs/{conv}/notifications: the conversation follows the account's settings again."""
    await rest_call(base_url, "DELETE", f"/v1/convs/{conv}/notifications", token, transport=transport)

