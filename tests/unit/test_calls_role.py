"""The calls role's parts without servers: its ring timers (calls/ringing.py), what it does with
the outbox's records and LiveKit's webhooks (calls/service.py, on in-process logs and a recording
RoomService), the side log `parley dev` feeds it (LogTee), and the gateway turning a writer's
grant into a LiveKit join (gateway/calls.py)."""

from __future__ import annotations

import asyncio
import datetime
from dataclasses import dataclass, field

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from livekit.api import TokenVerifier
from livekit.protocol.models import ParticipantInfo, Room
from livekit.protocol.webhook import WebhookEvent

from calls.join import JoinMinter
from calls.livekit import RoomParticipant
from calls.ringing import REFIRE_MS, RingTimers
from calls.service import WEBHOOK_PATH, CallsService, wants
from calls.sweep import SweptCalls
from calls.tokens import room_name
from calls.webhooks import WebhookIntake
from gateway.calls import CallJoins
from parley import events as E
from parley import frames as F
from parley.adapters.inprocess import InProcessLog, LogTee
from parley.config import Settings
from parley.errors import Unavailable
from parley.frames import CallState, EndReason, Media
from parley.ports import RingingCall
from parley.records import Command, EventRecord, RoomSession, RoomWork
from tests.livekit_standin import signed_webhook

KEY, SECRET = "APIrole", "a-calls-role-secret-of-32-characters"
T0 = 1_800_000_000_000


def ringing(call: str = "c1-k1", deadline: int = T0, users: tuple[str, ...] = ("b", "c")) -> E.CallRinging:
    return E.CallRinging(call=call, conv="c1", media=Media.AUDIO, initiator="a", ringing=users, ring_deadline=deadline)


# ---- ring timers --------------------------------------------------------------------------


def test_a_timer_fires_at_its_deadline_then_again_a_little_later_each_time_and_then_gives_up():
    timers = RingTimers()
    timers.observe(ringing())
    assert timers.due(T0 - 1) == [] and timers.next_at() == T0
    at = T0
    for wait in REFIRE_MS:
        assert timers.due(at) == [("c1-k1", "c1")]
        assert timers.next_at() == at + wait
        at += wait
    assert timers.due(at) == [("c1-k1", "c1")] and len(timers) == 0 and timers.next_at() is None


def test_a_timer_is_settled_once_every_callee_answered_or_declined_or_the_call_ended():
    timers = RingTimers()
    timers.observe(ringing("c1-k1"))
    timers.observe(ringing("c1-k2"))
    timers.observe(ringing("c1-k3"))
    timers.observe(E.CallAccepted(call="c1-k1", conv="c1", user="b", device="p"))
    assert len(timers) == 3
    timers.observe(E.CallDeclined(call="c1-k1", conv="c1", user="c", busy=True))
    timers.observe(E.CallEnded(call="c1-k2", conv="c1", reason=EndReason.HANGUP, duration=0))
    timers.observe(ringing("c1-k3", users=()))  # the timeout passed while the call goes on
    assert len(timers) == 0 and timers.due(T0 + 10**9) == []


def test_a_timer_armed_from_the_store_knows_no_callees_and_waits_for_the_end():
    timers = RingTimers()
    timers.arm("c1-k1", "c1", T0)
    timers.observe(E.CallAccepted(call="c1-k1", conv="c1", user="b", device="p"))
    assert timers.due(T0) == [("c1-k1", "c1")]
    timers.observe(E.CallEnded(call="c1-k1", conv="c1", reason=EndReason.MISSED, duration=0))
    assert timers.next_at() is None


# ---- which calls the sweep looks at -------------------------------------------------------


def test_the_sweep_looks_at_calls_active_for_the_grace_and_forgets_ended_ones():
    swept = SweptCalls()
    swept.observe(ringing("c1-k1"), T0)  # rings: not active yet
    swept.observe(E.CallAccepted(call="c1-k1", conv="c1", user="b", device="p"), T0 + 5000)
    swept.observe(ringing("c1-k2", users=()), T0)  # nobody rung for it: active at once
    swept.observe(E.CallJoined(call="c1-k3", conv="c1", user="b", device="p"), T0)
    swept.observe(E.CallEnded(call="c1-k3", conv="c1", reason=EndReason.HANGUP, duration=0), T0 + 1)
    swept.observe(E.CallDeclined(call="c1-k4", conv="c1", user="c"), T0)
    assert swept.due([], T0 + 10_000, grace=10_000) == ["c1-k2"]
    assert swept.due([], T0 + 15_000, grace=10_000) == ["c1-k1", "c1-k2"]
    # After a restart: LiveKit's Parley rooms are calls too, from when they were first listed.
    rooms = [room_name("c2-k1"), "someone-elses-room"]
    assert swept.due(rooms, T0 + 15_000, grace=10_000) == ["c1-k1", "c1-k2"]
    assert swept.due(rooms, T0 + 25_000, grace=10_000) == ["c1-k1", "c1-k2", "c2-k1"]
    swept.forget("c1-k1")
    assert len(swept) == 2 and "c1-k1" not in swept.due([], T0 + 99_000, grace=10_000)


# ---- the role -----------------------------------------------------------------------------


@dataclass
class Rooms:
    """A RoomService that records what it was asked; `down` fails that many requests first."""

    present: dict[str, list[RoomParticipant]] = field(default_factory=dict)
    asked: list[tuple[str, str, str]] = field(default_factory=list)
    down: int = 0

    def _fail(self) -> None:
        if self.down:
            self.down -= 1
            raise Unavailable("LiveKit is away", retry_after_ms=1)

    async def list_rooms(self) -> list[str]:
        self._fail()
        return list(self.present)

    async def list_participants(self, room: str) -> list[RoomParticipant]:
        self._fail()
        return self.present.get(room, [])

    async def remove_participant(self, room: str, identity: str) -> bool:
        self._fail()
        self.asked.append(("remove", room, identity))
        return True

    async def delete_room(self, room: str) -> bool:
        self._fail()
        self.asked.append(("delete", room, ""))
        return True

    async def aclose(self) -> None:
        pass


@dataclass
class Store:
    ringing: list[RingingCall] = field(default_factory=list)

    async def ringing_calls(self, since: int, until: int) -> list[RingingCall]:
        return [r for r in self.ringing if since <= r.deadline < until]


def work(call: str = "c1-k1", remove: tuple[RoomSession, ...] = (), close: bool = False) -> EventRecord:
    return EventRecord("c1", msgspec.json.encode(RoomWork(call=call, remove=remove, close=close)), to=[])


def event(e: E.Event) -> EventRecord:
    return EventRecord("c1", E.encode_event(e))


@pytest.fixture
async def role():
    rooms, store = Rooms(), Store()
    commands: InProcessLog[Command] = InProcessLog(100)
    records: InProcessLog[EventRecord] = InProcessLog(100)
    service = CallsService(rooms=rooms, intake=WebhookIntake(KEY, SECRET), commands=commands, records=records,
                           store=store, name="calls-t", ring_timeout_s=45, sweep_interval_s=3600, sweep_grace_s=0.2)
    yield service, rooms, store, commands, records
    await service.stop()


async def next_command(commands: InProcessLog[Command]) -> Command:
    async with asyncio.timeout(5):
        (cmd,) = await commands.next_batch(1)
    return cmd


async def test_room_work_puts_out_only_the_session_livekit_still_has_and_closes_rooms(role):
    service, rooms, _, _, records = role
    room = room_name("c1-k1")
    rooms.present[room] = [RoomParticipant(identity="b:phone", sid="PA_2", name="b", joined_at=1),
                           RoomParticipant(identity="b:tab", sid="PA_3", name="b", joined_at=1)]
    rooms.down = 1  # LiveKit away for a moment: tried again
    await service.start()
    await records.publish_many([work(remove=(RoomSession("b", "phone", "PA_1"), RoomSession("b", "tab", "PA_3"))),
                                event(E.CallLeft(call="c1-k1", conv="c1", user="b")),
                                work(call="c1-k2", close=True)])
    async with asyncio.timeout(10):
        while len(rooms.asked) < 2:
            await asyncio.sleep(0.05)
    # b's phone reconnected since (a new sid): that connection stays.
    assert rooms.asked == [("remove", room, "b:tab"), ("delete", room_name("c1-k2"), "")]


async def test_ring_timers_come_from_the_store_at_start_and_from_the_events_and_fire_commands(role):
    service, _, store, commands, records = role
    now = int(datetime.datetime.now().timestamp() * 1000)
    store.ringing = [RingingCall("c1", "c1-k1", now - 60_000), RingingCall("c1", "c1-kold", now - 2 * 86_400_000)]
    await service.start()
    fired = await next_command(commands)  # overdue while the role was away: at once
    assert (fired.conv, fired.user, fired.body) == ("c1", "calls", F.CallRingTimeout(rid=fired.body.rid,
                                                                                      call="c1-k1"))
    await records.publish(event(ringing("c1-k2", deadline=now + 300)))
    fired = await next_command(commands)
    assert isinstance(fired.body, F.CallRingTimeout) and fired.body.call == "c1-k2"
    await records.publish(event(E.CallEnded(call="c1-k1", conv="c1", reason=EndReason.MISSED, duration=0)))
    await records.publish(event(E.CallEnded(call="c1-k2", conv="c1", reason=EndReason.MISSED, duration=0)))
    await asyncio.sleep(REFIRE_MS[0] / 1000 + 0.5)
    assert len(commands) == 0  # ended: no refire


async def test_the_sweep_tells_each_writer_what_livekit_has_of_its_calls_room_and_forgets_a_gone_one(role):
    service, rooms, _, commands, records = role
    rooms.present[room_name("c1-k1")] = [RoomParticipant(identity="b:phone", sid="PA_1", name="b", joined_at=1),
                                         RoomParticipant(identity="EG_recorder", sid="PA_9", name="", joined_at=1)]
    await service.start()
    await records.publish_many([event(E.CallAccepted(call="c1-k1", conv="c1", user="b", device="phone")),
                                event(E.CallAccepted(call="c1-k2", conv="c1", user="b", device="phone"))])
    async with asyncio.timeout(5):
        while len(records):
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.3)  # the grace
    await service.sweep()
    listed = [await next_command(commands), await next_command(commands)]
    assert [(c.conv, c.user, c.body.event) for c in listed if isinstance(c.body, F.CallReconcile)] == [
        ("c1", "calls", F.RoomListed(call="c1-k1", exists=True, sids=("PA_1",))),  # not the recorder: not Parley's
        ("c1", "calls", F.RoomListed(call="c1-k2", exists=False))]
    await service.sweep()
    again = await next_command(commands)
    assert isinstance(again.body, F.CallReconcile) and again.body.event.call == "c1-k1" and len(commands) == 0


async def webhook(service: CallsService, body: bytes, authorization: str) -> tuple[int, dict]:
    """POST it to the role's route, over loopback."""
    app = web.Application()
    service.mount(app)
    async with TestClient(TestServer(app)) as http:
        async with http.post(WEBHOOK_PATH, data=body, headers={"Authorization": authorization}) as response:
            return response.status, await response.json()


async def test_a_verified_webhook_becomes_a_command_on_the_calls_conversation_and_a_bad_one_nothing(role):
    service, _, _, commands, _ = role
    hook = WebhookEvent(event="participant_joined", room=Room(name=room_name("c7-k1"), sid="RM_1"), id="EV_1")
    hook.participant.CopyFrom(ParticipantInfo(identity="u1:phone", sid="PA_1"))
    body, token = signed_webhook(hook, KEY, SECRET)
    status, answer = await webhook(service, body.replace(b"PA_1", b"PA_2"), token)
    assert (status, answer["error"]["code"]) == (401, "unauthorized") and len(commands) == 0
    assert (await webhook(service, body, token)) == (200, {})
    cmd = await next_command(commands)
    assert cmd.conv == "c7" and cmd.body == F.CallReconcile(
        rid=cmd.body.rid, event=F.ParticipantJoined(call="c7-k1", user="u1", device="phone", sid="PA_1"))
    other = WebhookEvent(event="room_finished", room=Room(name="not-parleys"), id="EV_2")
    assert (await webhook(service, *signed_webhook(other, KEY, SECRET))) == (200, {}) and len(commands) == 0


async def test_the_side_log_gets_only_what_the_calls_role_wants_and_never_holds_up_the_main_one():
    main: InProcessLog[EventRecord] = InProcessLog(10)
    side: InProcessLog[EventRecord] = InProcessLog(2)
    tee = LogTee(main, (side, wants))
    text = EventRecord("c1", b'{"op":"event","type":"message.new"}')
    await tee.publish_many([text, work(), event(ringing()), text])
    await tee.publish(work(close=True))  # the side log is full: dropped there, not in the main one
    assert len(main) == 5 and await side.next_batch(10) == [work(), event(ringing())]


def test_the_gateway_turns_a_grant_into_a_join_for_that_device_and_leaves_the_rest_alone():
    minter = JoinMinter.from_settings(Settings(livekit_url="wss://lk.example", livekit_api_key=KEY,
                                               livekit_api_secret=SECRET, stun_urls=("stun:stun.example",)))
    assert minter is not None
    joins = CallJoins(minter)
    view = E.CallView(id="c1-k1", conv="c1", media=Media.AUDIO, state=CallState.RINGING, initiator="a", direct=True,
                      max_participants=2, started_at=T0, ring_deadline=T0, ringing=["b"], participants=["a"],
                      in_room=[], answered_at=None, ended_at=None, end_reason=None, duration=0)
    ok = F.encode(E.CallResult(rid="r1", call=view, grant=E.CallGrant(role="listener", max_video_subscriptions=3)))
    joins.expect("s1", "r1", "a", "phone", "Ann")
    answer = msgspec.json.decode(joins.answer("s1", "r1", ok))
    assert "grant" not in answer and answer["call"]["id"] == "c1-k1"
    join = answer["join"]
    assert (join["url"], join["role"], join["max_video_subscriptions"]) == ("wss://lk.example", "listener", 3)
    assert join["ice_servers"] == [{"urls": ["stun:stun.example"]}]
    claims = TokenVerifier(KEY, SECRET, leeway=datetime.timedelta(0)).verify(join["token"])
    assert (claims.identity, claims.name, claims.video.can_publish) == ("a:phone", "Ann", False)
    assert joins.answer("s1", "r1", ok) == ok  # answered once; another session's reply passes as it is
    joins.expect("s1", "r2", "a", "phone", "Ann")
    refusal = b'{"op":"error","rid":"r2","code":"conflict","message":"the call has ended"}'
    assert joins.answer("s1", "r2", refusal) == refusal
