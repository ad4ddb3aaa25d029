"""REST routes of push (issue 14): the caller's devices (`/v1/devices`) and notification
settings (`/v1/me/notifications`, `/v1/convs/{id}/notifications`). A device belongs to the
login (session family) that registered it: its end ends the device (the push decision deletes
devices of ended logins). A settings change is sent to every session of the user
(`notify.settings`), so their other devices show the same."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from aiohttp import web
from msgspec import Meta

from delivery.fanout import Fanout
from delivery.push_decider import DevicesAndLogins, reachable_devices
from moderation.admin.routes import bearer_token, decode_body, json_response
from parley.accounts import Authenticator, Principal, now_ms
from parley.errors import Forbidden, NotFound
from parley.events import NotifySettingsChanged, encode_event
from parley.ids import new_id
from parley.ports import DeviceStore, MessageStore
from parley.records import Device, EventRecord, NotifySettings
from push.decision import ACCOUNT_SCOPE

#: Devices one user may register; the oldest goes when a new one would pass it.
MAX_DEVICES_PER_USER = 20
PUSH_OFF = "push notifications are not configured on this server (capabilities: features.push is false)"


class DeviceBody(msgspec.Struct, forbid_unknown_fields=True):
    platform: Literal["fcm", "apns", "apns_voip"]
    #: FCM registration tokens run to ~200 characters, APNs tokens are 64 hex digits.
    token: Annotated[str, Meta(min_length=1, max_length=4096)]
    app_id: Annotated[str, Meta(min_length=1, max_length=255)]
    locale: Annotated[str, Meta(min_length=1, max_length=35)] = "en"


class DeviceView(msgspec.Struct):
    """A device as its owner sees it (the token is theirs already; it is not echoed)."""

    id: str
    platform: str
    app_id: str
    locale: str
    created_at: int
    #: This login registered it.
    current: bool


class SettingsBody(msgspec.Struct, forbid_unknown_fields=True):
    level: Literal["all", "mentions", "none"] = "all"
    mute_until: Annotated[int, Meta(ge=0)] | None = None
    previews: bool = True


def _view(device: Device, who: Principal) -> DeviceView:
    return DeviceView(id=device.id, platform=device.platform, app_id=device.app_id, locale=device.locale,
                      created_at=device.created_at, current=device.family_id == who.claims.family)


class DeviceRoutes:
    def __init__(self, store: DevicesAndLogins, messages: MessageStore, auth: Authenticator, fanout: Fanout, *,
                 push_enabled: bool) -> None:
        self._store = store
        self._devices: DeviceStore = store
        self._messages = messages
        self._auth = auth
        self._fanout = fanout
        self._push_enabled = push_enabled

    async def register(self, request: web.Request) -> web.Response:
        who = await self._auth.principal(bearer_token(request))
        body: DeviceBody = await decode_body(request, DeviceBody)
        if not self._push_enabled:
            raise Forbidden(PUSH_OFF)
        if who.claims.family is None:
            raise Forbidden("guests get no push notifications")
        mine = await self._devices.devices(who.user_id)
        same = next((d for d in mine if d.token == body.token), None)
        device = Device(id=same.id if same else new_id("dv"), user_id=who.user_id, family_id=who.claims.family,
                        platform=body.platform, token=body.token, app_id=body.app_id, locale=body.locale,
                        created_at=same.created_at if same else now_ms())
        if same is None and len(mine) >= MAX_DEVICES_PER_USER:
            await self._devices.delete_device(who.user_id, mine[0].id)
        await self._devices.register_device(device)
        return json_response(_view(device, who), status=200 if same else 201)

    async def list(self, request: web.Request) -> web.Response:
        who = await self._auth.principal(bearer_token(request))
        found = await reachable_devices(self._store, who.user_id, now_ms())
        return json_response({"devices": [_view(d, who) for d in found]})

    async def delete(self, request: web.Request) -> web.Response:
        who = await self._auth.principal(bearer_token(request))
        if not await self._devices.delete_device(who.user_id, request.match_info["id"]):
            raise NotFound("no such device")
        return web.Response(status=204)

    async def get_settings(self, request: web.Request) -> web.Response:
        who = await self._auth.principal(bearer_token(request))
        stored = await self._devices.notify_settings(who.user_id)
        return json_response({"default": stored.get(ACCOUNT_SCOPE, NotifySettings()),
                              "convs": {k: v for k, v in stored.items() if k != ACCOUNT_SCOPE}})

    async def put_default(self, request: web.Request) -> web.Response:
        who = await self._auth.principal(bearer_token(request))
        return await self._put(who, ACCOUNT_SCOPE, _settings(await decode_body(request, SettingsBody)))

    async def put_conv(self, request: web.Request) -> web.Response:
        who = await self._auth.principal(bearer_token(request))
        body: SettingsBody = await decode_body(request, SettingsBody)
        return await self._put(who, await self._member_conv(request, who), _settings(body))

    async def delete_conv(self, request: web.Request) -> web.Response:
        who = await self._auth.principal(bearer_token(request))
        return await self._put(who, await self._member_conv(request, who), None)

    async def _member_conv(self, request: web.Request, who: Principal) -> str:
        conv = request.match_info["id"]
        found = await self._messages.membership(conv, who.user_id)
        if found is None or found[1] is None:
            raise NotFound("no such conversation")
        return conv

    async def _put(self, who: Principal, scope: str, settings: NotifySettings | None) -> web.Response:
        await self._devices.put_notify_settings(who.user_id, scope, settings)
        event = NotifySettingsChanged(conv=scope or None, settings=settings)
        await self._fanout.send(EventRecord(scope, encode_event(event), to=[who.user_id]))
        return json_response(event)

    def mount(self, app: web.Application) -> None:
        app.router.add_post("/v1/devices", self.register)
        app.router.add_get("/v1/devices", self.list)
        app.router.add_delete("/v1/devices/{id}", self.delete)
        app.router.add_get("/v1/me/notifications", self.get_settings)
        app.router.add_put("/v1/me/notifications", self.put_default)
        app.router.add_put("/v1/convs/{id}/notifications", self.put_conv)
        app.router.add_delete("/v1/convs/{id}/notifications", self.delete_conv)


def _settings(body: SettingsBody) -> NotifySettings:
    return NotifySettings(level=body.level, mute_until=body.mute_until, previews=body.previews)
