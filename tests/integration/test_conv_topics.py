"""A conversation's topic over the protocol on real servers: who may set it, and how members
hear of it live and after being away."""

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

