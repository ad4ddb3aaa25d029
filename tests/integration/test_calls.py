"""Calls end to end, on `parley dev` and on `parley up` (the `server` fixture runs both), with the
LiveKit stand-in as the servers' LiveKit: ringing on every device of the callee, answering on one
(the others stop), declining, busy, missed after the ring timeout, webhooks signed as LiveKit
signs them (and refused when they are not), a member kicked mid-call put out of the room with
RoomService, REST for bots, and bad input."""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from livekit.api import TokenVerifier

from moderation.admin.routes import PREFIX
from parley.errors import ParleyError
from parley.sdk import Account, Client, call_action, register, start_call
from tests.conftest import RING_TIMEOUT_S, ParleyProcess
from tests.integration.test_access import event_where
from tests.integration.test_admin import staff
from tests.livekit_standin import LiveKitStandIn, StandInThread

pytestmark = pytest.mark.integration


async def refused(coro: Any, code: str, rule: str | None = None) -> ParleyError:
    with pytest.raises(ParleyError) as err:
        await coro
    assert (err.value.code, err.value.rule) == (code, rule), err.value
    return err.value


async def deliver(server: ParleyProcess, webhooks: list[tuple[bytes, str]]) -> None:
    """POST LiveKit's webhooks to the server, as LiveKit does; each must be taken."""
    async with aiohttp.ClientSession() as http:
        for body, token in webhooks:
            async with http.post(server.webhook_url(), data=body,
                                 headers={"Authorization": token, "Content-Type": "application/webhook+json"}) as r:
                assert r.status == 200, await r.text()


async def asked_for(livekit: StandInThread, method: str, request: dict[str, str], since: int = 0) -> None:
    """Wait until the calls role asked LiveKit's RoomService this (it acts on the outbox's records)."""
    deadline = time.monotonic() + 15
    while not any(q.method == method and q.request == request for q in livekit.asked()[since:]):
        assert time.monotonic() < deadline, f"RoomService {method} {request} was not asked"
        await asyncio.sleep(0.1)


def verified(join: dict[str, Any], livekit: StandInThread) -> Any:
    """The join's token as LiveKit verifies it (no leeway)."""
    return TokenVerifier(livekit.standin.api_key, livekit.standin.api_secret,
                         leeway=datetime.timedelta(0)).verify(join["token"])


async def direct(a: Client, b: Account) -> str:
    return str((await a.request("conv.create", kind="direct", members=[b.user_id]))["conv"]["id"])


async def test_a_call_rings_every_device_and_stops_on_the_others_when_one_answers(server, make_user, livekit):
    ann, bob = await make_user(), await make_user()
    a = await Client.connect(server.base_url, ann.token, device_id="ann-phone")
    b_phone = await Client.connect(server.base_url, bob.token, device_id="phone")
    b_tablet = await Client.connect(server.base_url, bob.token, device_id="tablet")
    conv = await direct(a, bob)
    started = await a.call_start(conv, "video")
    call = started["call"]["id"]
    assert started["call"]["state"] == "ringing" and started["call"]["ringing"] == [bob.user_id]
    token = verified(started["join"], livekit)
    assert token.identity == f"{ann.user_id}:ann-phone" and token.name == ann.username
    assert token.video.room == started["join"]["room"] and token.video.can_publish
    assert not token.video.room_admin and started["join"]["role"] == "speaker"
    for device in (b_phone, b_tablet):
        ringing = await event_where(device, "call.ringing", call=call)
        assert (ringing["initiator"], ringing["media"], ringing["ringing"]) == (ann.user_id, "video", [bob.user_id])

    answered = await b_tablet.call_join(call)
    assert verified(answered["join"], livekit).identity == f"{bob.user_id}:tablet"
    for client in (b_phone, a):  # the phone stops ringing: bob answered elsewhere
        accepted = await event_where(client, "call.accepted", call=call)
        assert (accepted["user"], accepted["device"]) == (bob.user_id, "tablet")

    room = started["join"]["room"]
    await deliver(server, livekit.connect(room, f"{ann.user_id}:ann-phone", ann.username))
    await deliver(server, livekit.connect(room, f"{bob.user_id}:tablet", bob.username))
    assert (await event_where(b_phone, "call.joined", call=call, user=ann.user_id))["device"] == "ann-phone"
    await event_where(a, "call.joined", call=call, user=bob.user_id)

    await asyncio.sleep(1.1)  # a duration of at least a second
    await deliver(server, livekit.disconnect(room, f"{bob.user_id}:tablet"))
    ended = await event_where(a, "call.ended", call=call)
    assert ended["reason"] == "hangup" and ended["duration"] >= 1000
    record = (await b_phone.next_event("message.new", conv=conv))["message"]
    assert record["kind"] == "call" and record["call"]["participants"] == sorted([ann.user_id, bob.user_id])
    assert record["call"]["duration"] == ended["duration"] and not record["call"]["missed"]
    # The writer closed the room: RoomService DeleteRoom, and LiveKit's room_finished changes nothing.
    await asked_for(livekit, "DeleteRoom", {"room": room})
    await deliver(server, livekit.take_webhooks())
    history = (await a.request("history", conv=conv))["messages"]
    assert [m["kind"] for m in history] == ["call"]
    for client in (a, b_phone, b_tablet):
        await client.close()


async def test_a_declined_call_ends_for_the_caller_with_its_record(server, make_user):
    ann, bob = await make_user(), await make_user()
    a, b = await Client.connect(server.base_url, ann.token), await Client.connect(server.base_url, bob.token)
    conv = await direct(a, bob)
    call = (await a.call_start(conv))["call"]["id"]
    await event_where(b, "call.ringing", call=call)
    declined = await b.call_decline(call)
    assert declined["call"]["state"] == "ended" and "join" not in declined
    assert (await event_where(a, "call.declined", call=call))["user"] == bob.user_id
    assert (await event_where(a, "call.ended", call=call))["reason"] == "declined"
    record = (await a.next_event("message.new", conv=conv))["message"]
    assert (record["text"], record["call"]["reason"]) == ("Declined audio call", "declined")
    await refused(b.call_join(call), "conflict")  # the call has ended
    await a.close()
    await b.close()


async def test_a_callee_in_another_call_is_busy(server, make_user):
    ann, bob, cid = await make_user(), await make_user(), await make_user()
    a, b, c = [await Client.connect(server.base_url, u.token) for u in (ann, bob, cid)]
    first = (await a.call_start(await direct(a, bob)))["call"]["id"]
    await b.call_join(first)
    second = await c.call_start(await direct(c, bob))
    assert second["call"]["state"] == "ended" and second["call"]["end_reason"] == "busy"
    call = second["call"]["id"]
    assert (await event_where(c, "call.declined", call=call))["busy"] is True
    assert (await event_where(c, "call.ended", call=call))["reason"] == "busy"
    await a.call_leave(first)
    assert (await event_where(b, "call.ended", call=first))["reason"] == "hangup"
    again = await c.call_start(second["call"]["conv"])  # bob is free again: it rings
    assert again["call"]["state"] == "ringing"
    await c.call_end(again["call"]["id"])
    for client in (a, b, c):
        await client.close()


async def test_an_unanswered_call_is_missed_after_the_ring_timeout_and_synced_to_a_phone_that_was_off(
        server, make_user):
    ann, bob = await make_user(), await make_user()
    a = await Client.connect(server.base_url, ann.token)
    conv = await direct(a, bob)
    started = time.monotonic()
    call = (await a.call_start(conv))["call"]["id"]
    ended = await event_where(a, "call.ended", call=call, timeout=RING_TIMEOUT_S + 20)
    assert ended["reason"] == "missed" and time.monotonic() - started >= RING_TIMEOUT_S - 1
    b = await Client.connect(server.base_url, bob.token)  # bob's phone was off all along
    (synced,) = (await b.request("sync", since={}))["convs"]
    (record,) = synced["messages"]
    assert (record["kind"], record["text"], record["call"]["missed"]) == ("call", "Missed audio call", True)
    assert synced["unread"] == 1
    await a.close()
    await b.close()


async def test_a_member_kicked_mid_call_is_put_out_of_the_room_and_refused_later(server, make_user, livekit):
    owner, bob, cid = await make_user(), await make_user(), await make_user()
    o, b, c = [await Client.connect(server.base_url, u.token, device_id="d1") for u in (owner, bob, cid)]
    conv = (await o.request("conv.create", kind="group", members=[bob.user_id, cid.user_id]))["conv"]["id"]
    started = await o.call_start(conv)
    call, room = started["call"]["id"], started["join"]["room"]
    await b.call_join(call)
    await c.call_join(call)
    for user in (owner, bob, cid):
        await deliver(server, livekit.connect(room, f"{user.user_id}:d1", user.username))
    await event_where(o, "call.joined", call=call, user=bob.user_id)

    await o.request("member.kick", conv=conv, user=bob.user_id)
    left = await event_where(b, "call.left", call=call, user=bob.user_id)  # bob hears it, though no member
    assert left["removed"] is True
    await asked_for(livekit, "RemoveParticipant", {"room": room, "identity": f"{bob.user_id}:d1"})
    await deliver(server, livekit.take_webhooks())  # its participant_left: already out
    await refused(b.call_join(call), "not_found")
    # Its token is still valid: coming back into the room puts it out again.
    asked = len(livekit.asked())
    await deliver(server, livekit.connect(room, f"{bob.user_id}:d1", bob.username))
    await asked_for(livekit, "RemoveParticipant", {"room": room, "identity": f"{bob.user_id}:d1"}, since=asked)
    assert (await c.call_leave(call))["call"]["state"] == "active"  # the owner is still in it
    await o.call_end(call)
    for client in (o, b, c):
        await client.close()


async def test_webhooks_that_do_not_verify_are_refused_and_change_nothing(server, make_user, livekit):
    ann, bob = await make_user(), await make_user()
    a = await Client.connect(server.base_url, ann.token)
    started = await a.call_start(await direct(a, bob))
    call, room = started["call"]["id"], started["join"]["room"]
    ((body, token),) = livekit.connect(room, f"{ann.user_id}:web")[-1:]
    async with aiohttp.ClientSession() as http:
        for data, auth in ((body.replace(b"participant_joined", b"participant_left"), token),
                           (body, ""), (body, "Bearer not-a-token")):
            async with http.post(server.webhook_url(), data=data, headers={"Authorization": auth}) as r:
                assert r.status == 401
                assert (await r.json())["error"]["code"] == "unauthorized"
    with pytest.raises(TimeoutError):
        await event_where(a, "call.joined", call=call, timeout=1.0)
    await deliver(server, [(body, token), (body, token)])  # delivered twice: one join
    assert (await event_where(a, "call.joined", call=call))["device"] == "web"
    with pytest.raises(TimeoutError):
        await event_where(a, "call.joined", call=call, timeout=1.0)
    await a.call_end(call)
    await a.close()


async def test_bots_call_through_rest(server, make_user, livekit):
    ann, bot = await make_user(), await make_user()
    a = await Client.connect(server.base_url, ann.token)
    conv = await direct(a, bot)
    started = await start_call(server.base_url, bot.token, conv, "audio", device="worker-1")
    call = started["call"]["id"]
    token = verified(started["join"], livekit)
    assert token.identity == f"{bot.user_id}:worker-1" and token.video.can_publish_sources == ["microphone"]
    await event_where(a, "call.ringing", call=call)
    await a.call_join(call)
    ended = await call_action(server.base_url, bot.token, call, "end")
    assert ended["call"]["state"] == "ended" and "join" not in ended
    with pytest.raises(ParleyError) as err:
        await call_action(server.base_url, bot.token, call, "join")
    assert err.value.code == "conflict" and err.value.http_status == 409
    await a.close()


async def test_bad_input_is_answered_like_the_rest_of_the_protocol(server, make_user):
    ann, bob, eve = await make_user(), await make_user(), await make_user()
    a, e = await Client.connect(server.base_url, ann.token), await Client.connect(server.base_url, eve.token)
    conv = await direct(a, bob)
    await refused(a.call_start("c-no-such-conv"), "not_found")
    await refused(e.call_start(conv), "not_found")  # another pair's conversation: nothing to learn
    await refused(a.call_start(conv, "hologram"), "bad_request")
    await refused(a.request("call.start", conv=conv), "bad_request")
    await refused(a.call_join("no-dash"), "not_found")
    await refused(a.call_join(conv + "-knope"), "not_found")
    await refused(a.request("call.ring_timeout", call=conv + "-k1"), "bad_request")  # the calls role's only
    group = (await a.request("conv.create", kind="group", members=[bob.user_id]))["conv"]["id"]
    settings = await a.request("call.settings", conv=group, enabled=False)
    assert settings["enabled"] is False
    await refused(a.call_start(group), "forbidden", "calls_off")
    await refused(a.request("call.settings", conv=group), "bad_request")  # changes nothing
    await refused(a.request("call.settings", conv=group, max_participants=1), "bad_request")
    await a.close()
    await e.close()


async def test_capabilities_say_calls_are_on_with_their_media_and_limits(server, make_user):
    async with aiohttp.ClientSession() as http:
        async with http.get(server.base_url + "/v1/client/capabilities") as r:
            caps = await r.json()
        user = await make_user()
        async with http.get(server.base_url + "/v1/client/capabilities",
                            headers={"Authorization": f"Bearer {user.token}"}) as r:
            personal = await r.json()
    assert caps["features"]["calls"] is True
    assert caps["calls"] == {"calls": True, "media": ["audio", "video"], "max_participants": 32,
                             "max_video_subscriptions": 9}
    assert "ice_servers" not in caps["calls"] and personal["calls"]["ice_servers"] == []  # no STUN/TURN set here


async def test_without_a_livekit_calls_are_off_and_say_so(fresh_server):
    srv = fresh_server()  # no PARLEY_LIVEKIT_*: calls off
    ann, bob = await register(srv.base_url, "calls_off_a", "correct horse"), await register(
        srv.base_url, "calls_off_b", "correct horse")
    a = await Client.connect(srv.base_url, ann.token)
    conv = await direct(a, bob)
    err = await refused(a.call_start(conv), "forbidden", "calls_off")
    assert "LiveKit" in err.message
    await refused(a.call_join(conv + "-k1"), "forbidden", "calls_off")
    with pytest.raises(ParleyError) as rest:
        await start_call(srv.base_url, bob.token, conv)
    assert (rest.value.code, rest.value.rule, rest.value.http_status) == ("forbidden", "calls_off", 403)
    async with aiohttp.ClientSession() as http:
        async with http.get(srv.base_url + "/v1/client/capabilities") as r:
            caps = await r.json()
    assert caps["features"]["calls"] is False and caps["calls"] == {
        "calls": False, "media": [], "max_participants": 0, "max_video_subscriptions": 0}
    await a.close()


@pytest.fixture
def own_livekit() -> Iterator[StandInThread]:
    """A stand-in of the test's own, for a server of its own (fresh_server) with other settings."""
    livekit = StandInThread(LiveKitStandIn("APIownstandin", "a-test-own-stand-in-secret-of-32-chars"))
    livekit.start()
    yield livekit
    livekit.stop()


async def group_call_in_the_room(srv: ParleyProcess, livekit: StandInThread, owner: Account, *others: Account
                                 ) -> tuple[list[Client], str, str, str]:
    """The owner's group with `others`, a call everyone answered and whose room everyone entered
    (the webhooks delivered): the clients (device d1), the conversation, the call and its room."""
    clients = [await Client.connect(srv.base_url, u.token, device_id="d1") for u in (owner, *others)]
    conv = (await clients[0].request("conv.create", kind="group", members=[u.user_id for u in others]))["conv"]["id"]
    started = await clients[0].call_start(conv)
    call, room = started["call"]["id"], started["join"]["room"]
    for client in clients[1:]:
        await client.call_join(call)
    for user in (owner, *others):
        await deliver(srv, livekit.connect(room, f"{user.user_id}:d1", user.username))
    for user in others:
        await event_where(clients[0], "call.joined", call=call, user=user.user_id)
    return clients, conv, call, room


async def test_the_sweep_takes_out_who_left_without_a_webhook_and_ends_a_call_whose_room_vanished(
        fresh_server, own_livekit):
    """LiveKit's webhooks lost: a participant gone from the room leaves the call after two sweeps,
    a room gone ends its call (with its record), and a call whose room has everyone is untouched."""
    livekit = own_livekit
    srv = fresh_server(**livekit.env, PARLEY_CALL_SWEEP_INTERVAL_S="1", PARLEY_CALL_SWEEP_GRACE_S="1")
    owner, bob, cid, ann, dan = [await register(srv.base_url, f"sweep_{n}", "correct horse")
                                 for n in ("owner", "bob", "cid", "ann", "dan")]
    (o, b, c), conv, call, room = await group_call_in_the_room(srv, livekit, owner, bob, cid)
    (a, d), _, healthy, _ = await group_call_in_the_room(srv, livekit, ann, dan)

    livekit.disconnect(room, f"{bob.user_id}:d1")  # its participant_left never arrives
    left = await event_where(o, "call.left", call=call, user=bob.user_id, timeout=15)
    assert left["device"] == "d1" and not left.get("removed")
    assert (await c.call_join(call))["call"]["participants"] == sorted([owner.user_id, cid.user_id])

    livekit.call(lambda s: s.rooms.pop(room))  # the room is gone, and so is its room_finished
    ended = await event_where(o, "call.ended", call=call, timeout=15)
    assert ended["reason"] == "hangup"
    record = (await c.next_event("message.new", conv=conv))["message"]
    assert record["kind"] == "call" and record["call"]["participants"] == sorted(
        [owner.user_id, bob.user_id, cid.user_id])
    # Swept all along, the call whose room has everyone goes on.
    again = await d.call_join(healthy)
    assert again["call"]["state"] == "active" and again["call"]["in_room"] == sorted([ann.user_id, dan.user_id])
    for kind in ("call.left", "call.ended"):  # ann is in that call only
        with pytest.raises(TimeoutError):
            await a.next_event(kind, timeout=0.2)
    for client in (o, b, c, a, d):
        await client.close()


async def test_a_user_suspended_mid_call_is_taken_out_of_it_and_put_out_of_the_room(fresh_server, own_livekit):
    livekit = own_livekit
    srv = fresh_server(**livekit.env)
    owner, bob, cid = [await register(srv.base_url, f"suspend_{n}", "correct horse") for n in ("owner", "bob", "cid")]
    mod = await staff(srv, "moderator")
    (o, b, c), conv, call, room = await group_call_in_the_room(srv, livekit, owner, bob, cid)
    asked = len(livekit.asked())
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{srv.base_url}{PREFIX}/users/{bob.user_id}/suspend", json={"reason": "abuse"},
                             headers={"Authorization": f"Bearer {mod.token}"}) as r:
            assert r.status == 200, await r.text()
    left = await event_where(o, "call.left", call=call, user=bob.user_id)
    assert left["removed"] is True
    await asked_for(livekit, "RemoveParticipant", {"room": room, "identity": f"{bob.user_id}:d1"}, since=asked)
    await deliver(srv, livekit.take_webhooks())  # its participant_left: already out
    assert await b.wait_closed() == 4003  # and its sessions are over
    after = await c.call_join(call)
    assert after["call"]["state"] == "active" and after["call"]["participants"] == sorted(
        [owner.user_id, cid.user_id]) and after["call"]["in_room"] == sorted([owner.user_id, cid.user_id])
    for client in (o, c):
        await client.close()
