"""A member's own mute in `conv.members`, over the protocol on a real server: what a client that
(re)loads reads to keep its composer off while muted, and to turn it on once the mute is over."""

from __future__ import annotations

import asyncio
import time

import pytest

from parley.sdk import Client
from tests.integration.test_access import event_where

pytestmark = pytest.mark.integration


async def entries(client: Client, conv: str) -> dict[str, dict]:
    return {m["user"]: m for m in (await client.request("conv.members", conv=conv))["members"]}


async def test_a_muted_member_reads_their_own_mute_and_nobody_elses_until_it_ends(server, make_user):
    owner, bob, carol = await make_user(), await make_user(), await make_user()
    o, b, c = [await Client.connect(server.base_url, u.token) for u in (owner, bob, carol)]
    conv = (await o.request("conv.create", kind="group", members=[bob.user_id, carol.user_id]))["conv"]["id"]
    assert all("muted_until" not in m for m in (await entries(b, conv)).values())

    until = (await o.request("member.mute", conv=conv, user=bob.user_id, duration_s=600))["until"]
    assert (await entries(b, conv))[bob.user_id]["muted_until"] == until
    # Only the caller's own entry says it: the others learn of mutes from events or conv.sanctions.
    assert "muted_until" not in (await entries(o, conv))[bob.user_id]
    assert "muted_until" not in (await entries(c, conv))[bob.user_id]
    # A page without the caller carries none either.
    after_bob = await b.request("conv.members", conv=conv, after=bob.user_id)
    assert all("muted_until" not in m for m in after_bob["members"])

    await o.request("member.mute", conv=conv, user=bob.user_id)  # until unmuted: null, not absent
    assert (await entries(b, conv))[bob.user_id]["muted_until"] is None
    await o.request("member.unmute", conv=conv, user=bob.user_id)
    await event_where(b, "member.unmuted", conv=conv, user=bob.user_id)
    assert "muted_until" not in (await entries(b, conv))[bob.user_id]

    # A mute that ends by time sends no event: it is simply gone from the entry.
    until = (await o.request("member.mute", conv=conv, user=carol.user_id, duration_s=1))["until"]
    assert (await entries(c, conv))[carol.user_id]["muted_until"] == until
    await asyncio.sleep(max(0.0, (until - time.time() * 1000) / 1000 + 0.05))
    assert "muted_until" not in (await entries(c, conv))[carol.user_id]
    await asyncio.gather(o.close(), b.close(), c.close())
