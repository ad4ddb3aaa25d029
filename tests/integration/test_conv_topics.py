"""A conversation's topic and the list of its mutes and bans, over the protocol on real servers:
who may set a topic, how members hear of it live and after being away, and who sees (and lifts)
the mutes and bans of a conversation."""

from __future__ import annotations

import asyncio

import pytest

from parley.sdk import Client
from tests.integration.test_access import event_where
from tests.integration.test_moderation import refused

pytestmark = pytest.mark.integration


async def test_a_topic_reaches_every_member_live_and_in_the_list_after_being_away(server, make_user):
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    a, b = [await Client.connect(server.base_url, u.token) for u in (alice, bob)]
    conv = (await a.request("conv.create", kind="group", members=[bob.user_id, carol.user_id],
                            title="Launch"))["conv"]["id"]
    assert (await a.request("conv.list"))["convs"][0]["topic"] is None
    await refused(b.request("conv.update", conv=conv, topic="mine now"), "role")  # members may not rename either
    view = (await a.request("conv.update", conv=conv, topic="Ship it\non Friday"))["conv"]
    assert (view["title"], view["topic"]) == ("Launch", "Ship it on Friday")
    told = await event_where(b, "conv.updated", conv={**view, "role": "member"})
    assert told["conv"]["topic"] == "Ship it on Friday"
    # Carol was not connected: her list has it.
    async with await Client.connect(server.base_url, carol.token) as c:
        listed = {x["id"]: x for x in (await c.request("conv.list"))["convs"]}
        assert listed[conv]["topic"] == "Ship it on Friday"
    # Admins may set it too; empty clears it.
    await a.request("member.role", conv=conv, user=bob.user_id, role="admin")
    assert (await b.request("conv.update", conv=conv, topic=""))["conv"]["topic"] is None
    while (told := await a.next_event("conv.updated"))["conv"]["topic"] is not None:
        pass
    direct = (await a.request("conv.create", kind="direct", members=[bob.user_id]))["conv"]["id"]
    await refused(a.request("conv.update", conv=direct, topic="us"), "not_possible")
    await asyncio.gather(a.close(), b.close())


async def test_those_who_may_lift_mutes_and_bans_list_them_with_names(server, make_user):
    owner, mod, member, outsider = [await make_user() for _ in range(4)]
    o, m, u = [await Client.connect(server.base_url, x.token) for x in (owner, mod, member)]
    conv = (await o.request("conv.create", kind="group", members=[mod.user_id, member.user_id]))["conv"]["id"]
    await o.request("member.role", conv=conv, user=mod.user_id, role="moderator")
    await m.request("member.mute", conv=conv, user=member.user_id, duration_s=600, reason="cool off")
    await o.request("member.ban", conv=conv, user=outsider.user_id)  # not a member: banned beforehand

    seen = await o.request("conv.sanctions", conv=conv)
    assert [(s["user"], s["by"], s["reason"]) for s in seen["mutes"]] == [(member.user_id, mod.user_id, "cool off")]
    assert seen["mutes"][0]["until"] > seen["mutes"][0]["at"]
    assert [(s["user"], s["until"]) for s in seen["bans"]] == [(outsider.user_id, None)]
    assert seen["profiles"][outsider.user_id]["username"] == outsider.username  # named, though not a member
    by_mod = await m.request("conv.sanctions", conv=conv)
    assert [s["user"] for s in by_mod["mutes"]] == [member.user_id] and by_mod["bans"] == []  # bans need admin
    await refused(u.request("conv.sanctions", conv=conv), "role")

    await m.request("member.unmute", conv=conv, user=member.user_id)
    await event_where(u, "member.unmuted", conv=conv, user=member.user_id)
    await o.request("member.unban", conv=conv, user=outsider.user_id)
    assert (await o.request("conv.sanctions", conv=conv))["mutes"] == []
    assert (await o.request("conv.sanctions", conv=conv))["bans"] == []
    async with await Client.connect(server.base_url, outsider.token) as x:
        await refused(x.request("conv.sanctions", conv=conv), None, "not_found")  # a private room: not there
    await asyncio.gather(o.close(), m.close(), u.close())
