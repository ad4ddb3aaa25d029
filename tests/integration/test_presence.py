"""Presence between people who share a direct chat or a small group: events on a user's first
connect and last disconnect, and the `presence` request. Runs on `parley dev` and `parley up`."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

import pytest

from parley.sdk import Client

pytestmark = pytest.mark.integration


async def test_a_contact_sees_online_then_offline_with_last_seen(server, make_user):
    # Bug 9 of issue 17: the capabilities said presence: false while these events were sent.
    with urllib.request.urlopen(server.base_url + "/v1/client/capabilities") as resp:
        assert json.load(resp)["features"]["presence"] is True
    alice, bob = await make_user(), await make_user()
    b = await Client.connect(server.base_url, bob.token)
    a = await Client.connect(server.base_url, alice.token)  # not contacts yet: bob hears nothing
    await a.request("conv.create", kind="direct", members=[bob.user_id])
    before = int(time.time() * 1000)
    await a.close()
    offline = await b.next_event("presence", timeout=5)
    assert (offline["user"], offline["status"]) == (alice.user_id, "offline")
    assert offline["last_seen"] >= before - 1000

    a = await Client.connect(server.base_url, alice.token)
    online = await b.next_event("presence", timeout=5)
    assert (online["user"], online["status"]) == (alice.user_id, "online")
    second = await Client.connect(server.base_url, alice.token)  # another device: no news
    await a.close()  # one device left: still online
    await second.close()
    offline = await b.next_event("presence", timeout=5)
    assert (offline["user"], offline["status"]) == (alice.user_id, "offline")
    with pytest.raises(TimeoutError):  # one event per change, none per device
        await b.next_event("presence", timeout=0.5)
    await b.close()


async def test_the_presence_request_answers_only_about_contacts(server, make_user):
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    a = await Client.connect(server.base_url, alice.token)
    await a.request("conv.create", kind="group", members=[bob.user_id])
    b = await Client.connect(server.base_url, bob.token)
    answer = await b.request("presence", users=[alice.user_id, carol.user_id, bob.user_id])
    assert answer["presence"] == [{"user": alice.user_id, "status": "online"}]  # carol shares nothing
    await a.close()
    assert (await b.next_event("presence", timeout=5))["status"] == "offline"  # the server noticed
    answer = await b.request("presence", users=[alice.user_id])
    assert answer["presence"] == [{"user": alice.user_id, "status": "offline"}]
    await b.close()


async def test_members_who_share_only_a_channel_hear_nothing(server, make_user):
    owner, reader = await make_user(), await make_user()
    o = await Client.connect(server.base_url, owner.token)
    await o.request("conv.create", kind="channel", members=[reader.user_id])
    await o.close()
    r = await Client.connect(server.base_url, reader.token)
    o = await Client.connect(server.base_url, owner.token)
    with pytest.raises(TimeoutError):
        await r.next_event("presence", timeout=0.7)
    assert (await r.request("presence", users=[owner.user_id]))["presence"] == []
    await close_all(o, r)


async def close_all(*clients: Client) -> None:
    for c in clients:
        await c.close()


async def test_presence_is_hidden_between_blocked_users_either_way(server, make_user):
    alice, bob = await make_user(), await make_user()
    a = await Client.connect(server.base_url, alice.token)
    await a.request("conv.create", kind="direct", members=[bob.user_id])
    b = await Client.connect(server.base_url, bob.token)
    assert (await b.request("presence", users=[alice.user_id]))["presence"][0]["status"] == "online"
    await b.request("user.block", user=alice.user_id)
    await b.next_event("user.blocked")
    # Either side stops seeing the other; a gateway's cached view of blocks lasts at most 10 s.
    for asker, about in ((b, alice), (a, bob)):
        deadline = time.monotonic() + 12
        while (await asker.request("presence", users=[about.user_id]))["presence"]:
            assert time.monotonic() < deadline, "presence still shared after a block"
            await asyncio.sleep(0.25)
    await a.close()
    with pytest.raises(TimeoutError):
        await b.next_event("presence", timeout=0.7)
    await b.close()
