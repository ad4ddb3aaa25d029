"""A LiveKit stand-in for tests (no LiveKit server installs here; never part of the product).

It serves RoomService's real Twirp API as livekit-api's client calls it: HTTP POST
`/twirp/livekit.RoomService/<Method>` with a protobuf or JSON body and a bearer token, which it
verifies as LiveKit does (signature and expiry at leeway 0, then the grant the method needs:
`roomAdmin` for that very room, `roomCreate`, `roomList`), answering Twirp's JSON errors
otherwise. It keeps rooms and participants in memory, records every request it was asked, and
queues the webhooks LiveKit would send for what happened, signed as LiveKit signs them (a token
whose `sha256` claim is the base64 SHA-256 of the JSON body).

`python -m tests.livekit_standin --port P --key K --secret S` serves one until SIGTERM (the
benchmark's LiveKit: `python -m loadtests.bench calls`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import hashlib
import itertools
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import jwt
from aiohttp import web
from google.protobuf.json_format import MessageToDict, MessageToJson, Parse, ParseError
from google.protobuf.message import DecodeError, Message
from livekit.api import AccessToken, TokenVerifier
from livekit.api.access_token import Claims
from livekit.protocol.models import DisconnectReason, ParticipantInfo, Room
from livekit.protocol.room import (CreateRoomRequest, DeleteRoomRequest, DeleteRoomResponse, ListParticipantsRequest,
                                   ListParticipantsResponse, ListRoomsRequest, ListRoomsResponse,
                                   RemoveParticipantResponse, RoomParticipantIdentity)
from livekit.protocol.webhook import WebhookEvent

from parley.app.localservers import free_port

_STATUS = {"unauthenticated": 401, "permission_denied": 403, "not_found": 404, "bad_route": 404, "malformed": 400,
           "invalid_argument": 400, "unavailable": 503, "internal": 500}
_ids = itertools.count(1)
T = TypeVar("T")


def signed_webhook(event: WebhookEvent, api_key: str, api_secret: str,
                   ttl: datetime.timedelta = datetime.timedelta(minutes=5)) -> tuple[bytes, str]:
    """(body, Authorization header) of one delivery, as LiveKit's webhook notifier makes them."""
    body = MessageToJson(event).encode()
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    return body, AccessToken(api_key, api_secret).with_sha256(digest).with_ttl(ttl).to_jwt()


class TwirpFailure(Exception):
    def __init__(self, code: str, msg: str) -> None:
        super().__init__(msg)
        self.code, self.msg = code, msg


@dataclass
class Asked:
    """One request as the stand-in received it."""

    method: str
    request: dict[str, Any]
    content_type: str
    #: The grants of the bearer token that came with it.
    grants: dict[str, Any]


@dataclass
class _Method:
    request: type[Message]
    grant: Callable[[Claims, Message], bool]
    answer: Callable[[Message], Message]


@dataclass
class LiveKitStandIn:
    api_key: str
    api_secret: str
    port: int = field(default_factory=free_port)
    rooms: dict[str, dict[str, ParticipantInfo]] = field(default_factory=dict)
    asked: list[Asked] = field(default_factory=list)
    #: Webhook events of what happened, oldest first (`signed_webhook` makes deliveries of them).
    webhooks: list[WebhookEvent] = field(default_factory=list)
    #: Every request waits this long first (a LiveKit that does not answer in time).
    delay_s: float = 0.0
    #: Every request fails with this Twirp code (a LiveKit in trouble).
    fail_with: str | None = None
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/twirp/livekit.RoomService/{method}", self._serve)
        app.router.add_get("/healthz", self._healthz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ---- what clients do in a real LiveKit: join a room (auto-created, as LiveKit does) ------

    def join(self, room: str, identity: str, name: str = "") -> ParticipantInfo:
        """A participant connects (replacing an earlier connection of the same identity)."""
        people = self.rooms.get(room)
        if people is None:
            people = self.rooms[room] = {}
            self._event("room_started", room)
        if identity in people:
            self._leave(room, identity, DisconnectReason.DUPLICATE_IDENTITY)
        info = ParticipantInfo(sid=f"PA_{next(_ids)}", identity=identity, name=name, joined_at=int(time.time()),
                               state=ParticipantInfo.State.ACTIVE)
        people[identity] = info
        self._event("participant_joined", room, info)
        return info

    def leave(self, room: str, identity: str) -> None:
        """A participant disconnects by itself."""
        self._leave(room, identity, DisconnectReason.CLIENT_INITIATED)

    def signed(self, event: WebhookEvent) -> tuple[bytes, str]:
        return signed_webhook(event, self.api_key, self.api_secret)

    def _leave(self, room: str, identity: str, reason: DisconnectReason) -> None:
        info = self.rooms[room].pop(identity)
        gone = ParticipantInfo()
        gone.CopyFrom(info)
        gone.state, gone.disconnect_reason = ParticipantInfo.State.DISCONNECTED, reason
        self._event("participant_left", room, gone)

    def _event(self, kind: str, room: str, participant: ParticipantInfo | None = None) -> None:
        event = WebhookEvent(event=kind, room=Room(name=room, sid=f"RM_{room}"), id=f"EV_{next(_ids)}",
                             created_at=int(time.time()))
        if participant is not None:
            event.participant.CopyFrom(participant)
        self.webhooks.append(event)

    # ---- RoomService ----------------------------------------------------------------------

    def _methods(self) -> dict[str, _Method]:
        def admin(claims: Claims, req: Message) -> bool:
            return bool(claims.video and claims.video.room_admin and claims.video.room == getattr(req, "room"))

        def create(claims: Claims, req: Message) -> bool:
            return bool(claims.video and claims.video.room_create)

        def listing(claims: Claims, req: Message) -> bool:
            return bool(claims.video and claims.video.room_list)

        return {
            "ListParticipants": _Method(ListParticipantsRequest, admin, self._list_participants),
            "RemoveParticipant": _Method(RoomParticipantIdentity, admin, self._remove_participant),
            "GetParticipant": _Method(RoomParticipantIdentity, admin, self._get_participant),
            "DeleteRoom": _Method(DeleteRoomRequest, create, self._delete_room),
            "CreateRoom": _Method(CreateRoomRequest, create, self._create_room),
            "ListRooms": _Method(ListRoomsRequest, listing, self._list_rooms),
        }

    def _list_participants(self, req: Any) -> Message:
        return ListParticipantsResponse(participants=list(self.rooms.get(req.room, {}).values()))

    def _remove_participant(self, req: Any) -> Message:
        if req.identity not in self.rooms.get(req.room, {}):
            raise TwirpFailure("not_found", "participant not found")
        self._leave(req.room, req.identity, DisconnectReason.PARTICIPANT_REMOVED)
        return RemoveParticipantResponse()

    def _get_participant(self, req: Any) -> Message:
        info = self.rooms.get(req.room, {}).get(req.identity)
        if info is None:
            raise TwirpFailure("not_found", "participant not found")
        return info

    def _delete_room(self, req: Any) -> Message:
        if req.room not in self.rooms:
            raise TwirpFailure("not_found", "room not found")
        for identity in list(self.rooms[req.room]):
            self._leave(req.room, identity, DisconnectReason.ROOM_DELETED)
        del self.rooms[req.room]
        self._event("room_finished", req.room)
        return DeleteRoomResponse()

    def _create_room(self, req: Any) -> Message:
        if req.name not in self.rooms:
            self.rooms[req.name] = {}
            self._event("room_started", req.name)
        return Room(name=req.name, sid=f"RM_{req.name}")

    def _list_rooms(self, req: Any) -> Message:
        names = [n for n in self.rooms if not req.names or n in req.names]
        return ListRoomsResponse(rooms=[Room(name=n, sid=f"RM_{n}") for n in names])

    async def _serve(self, request: web.Request) -> web.Response:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        json_body = request.content_type == "application/json"
        try:
            if self.fail_with is not None:
                raise TwirpFailure(self.fail_with, "the stand-in was told to fail")
            method = self._methods().get(request.match_info["method"])
            if method is None:
                raise TwirpFailure("bad_route", f"no method {request.match_info['method']}")
            if request.content_type not in ("application/json", "application/protobuf"):
                raise TwirpFailure("bad_route", f"unexpected Content-Type {request.content_type!r}")
            claims, grants = self._verify(request.headers.get("Authorization", ""))
            raw = await request.read()
            try:
                req = Parse(raw.decode(), method.request()) if json_body else method.request.FromString(raw)
            except (ParseError, DecodeError, UnicodeDecodeError) as exc:
                raise TwirpFailure("malformed", f"the body does not decode: {exc}") from exc
            self.asked.append(Asked(request.match_info["method"], MessageToDict(req, preserving_proto_field_name=True),
                                    request.content_type, grants))
            if not method.grant(claims, req):
                raise TwirpFailure("permission_denied", "the token does not grant this")
            reply = method.answer(req)
        except TwirpFailure as failure:
            return web.json_response({"code": failure.code, "msg": failure.msg}, status=_STATUS[failure.code])
        if json_body:
            return web.Response(body=MessageToJson(reply).encode(), content_type="application/json")
        return web.Response(body=reply.SerializeToString(), content_type="application/protobuf")

    def _verify(self, authorization: str) -> tuple[Claims, dict[str, Any]]:
        """The token's claims, and its video grants exactly as written (the verifier fills in
        defaults for what a token leaves out)."""
        token = authorization.removeprefix("Bearer ")
        if token == authorization:
            raise TwirpFailure("unauthenticated", "no bearer token")
        try:
            claims = TokenVerifier(self.api_key, self.api_secret, leeway=datetime.timedelta(0)).verify(token)
        except jwt.PyJWTError as exc:
            raise TwirpFailure("unauthenticated", f"the token does not verify: {exc}") from exc
        return claims, dict(jwt.decode(token, options={"verify_signature": False}).get("video", {}))


class StandInThread:
    """The stand-in on an event loop of its own thread, for servers started once per test session
    (a test's own loop ends with the test). `call(fn)` runs `fn(standin)` on that loop, so the
    stand-in's state is only ever touched from there."""

    def __init__(self, standin: LiveKitStandIn) -> None:
        self.standin = standin
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="livekit-standin", daemon=True)

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.standin.start(), self._loop).result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.standin.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def call(self, fn: Callable[[LiveKitStandIn], T]) -> T:
        async def run() -> T:
            return fn(self.standin)
        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    @property
    def env(self) -> dict[str, str]:
        """What a Parley process needs to use this LiveKit."""
        return {"PARLEY_LIVEKIT_URL": self.standin.url, "PARLEY_LIVEKIT_API_KEY": self.standin.api_key,
                "PARLEY_LIVEKIT_API_SECRET": self.standin.api_secret}

    def connect(self, room: str, identity: str, name: str = "") -> list[tuple[bytes, str]]:
        """A client enters `room` (as LiveKit's SDK would with a token): the signed webhooks of it."""
        return self.call(lambda s: [s.signed(e) for e in _taken(s, lambda: s.join(room, identity, name))])

    def disconnect(self, room: str, identity: str) -> list[tuple[bytes, str]]:
        """A client leaves `room` by itself: the signed webhooks of it."""
        return self.call(lambda s: [s.signed(e) for e in _taken(s, lambda: s.leave(room, identity))])

    def asked(self) -> list[Asked]:
        return self.call(lambda s: list(s.asked))

    def take_webhooks(self) -> list[tuple[bytes, str]]:
        """The signed webhooks of what happened since the last take (RoomService's doing included)."""
        return self.call(lambda s: [s.signed(e) for e in _taken(s, lambda: None)])


def _taken(standin: LiveKitStandIn, act: Callable[[], object]) -> list[WebhookEvent]:
    act()
    taken, standin.webhooks[:] = list(standin.webhooks), []
    return taken


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.livekit_standin")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--secret", required=True)
    args = parser.parse_args()

    async def serve() -> None:
        standin = LiveKitStandIn(args.key, args.secret, port=args.port)
        await standin.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await standin.stop()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
