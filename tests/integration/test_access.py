"""Who sees and does what: non-members, channels, public and password rooms, membership-bound
history, invitations, leaving."""

from __future__ import annotations

import asyncio

import pytest

from parley.errors import ParleyError
from parley.sdk import Client

pytestmark = pytest.mark.integration


async def event_where(client: Client, type_: str, timeout: float = 5.0, **match: object) -> dict:
    """The next `type_` event whose fields equal `match` (earlier non-matching ones are consumed)."""
    while True:
        event = await client.next_event(type_, timeout=timeout)
        if all(event.get(k) == v for k, v in match.items()):
            return event


async def expect_error(code: str, coro) -> ParleyError:
    with pytest.raises(ParleyError) as err:
        await coro
    assert err.value.code == code, err.value
    return err.value


async def test_a_non_member_gets_no_events_no_history_and_learns_nothing(server, make_user):
    alice, bob, eve = await make_user(), await make_user(), await make_user()
    a = await Client.connect(server.base_url, alice.token)
    e = await Client.connect(server.base_url, eve.token)
    conv = (await a.request("conv.create", kind="group", members=[bob.user_id]))["conv"]["id"]
    await a.send(conv, "secret")
    await a.request("typing", conv=conv)
    for op, fields in [("history", {}), ("send", {"cmid": "x", "text": "hi"}), ("typing", {}),
                       ("read", {"seq": 1}), ("react", {"seq": 1, "emoji": "👍", "on": True}),
                       ("edit", {"seq": 1, "text": "x"}), ("delete", {"seq": 1}), ("conv.leave", {}),
                       ("conv.join", {}), ("conv.invite", {"users": [eve.user_id]})]:
        err = await expect_error("not_found", e.request(op, conv=conv, **fields))
        assert "secret" not in err.message
    missing = await expect_error("not_found", e.request("history", conv="c-does-not-exist"))
    assert missing.message == err.message  # the same answer as for a conversation that exists
    assert (await e.request("sync", since={conv: 0}))["convs"] == []
    assert conv not in [c["id"] for c in (await e.request("conv.list"))["convs"]]
    await asyncio.sleep(0.3)
    assert e.drain_events() == []
    await asyncio.gather(a.close(), e.close())


async def test_only_owner_and_admins_post_in_a_channel(server, make_user):
    owner, sub = await make_user(), await make_user()
    o = await Client.connect(server.base_url, owner.token)
    s = await Client.connect(server.base_url, sub.token)
    chan = (await o.request("conv.create", kind="channel", members=[sub.user_id], title="news"))["conv"]
    assert chan["kind"] == "channel" and chan["role"] == "owner"
    await o.send(chan["id"], "announcement")
    err = await expect_error("forbidden", s.send(chan["id"], "may I?"))
    assert "channel" in err.message
    assert (await s.next_event("message.new", conv=chan["id"]))["message"]["text"] == "announcement"
    await s.request("react", conv=chan["id"], seq=1, emoji="🎉", on=True)  # subscribers may react
    await s.request("read", conv=chan["id"], seq=1)
    # In a channel a read receipt goes only to the reader's own sessions.
    assert (await s.next_event("read"))["user"] == sub.user_id
    with pytest.raises(TimeoutError):
        await o.next_event("read", timeout=0.5)
    await expect_error("forbidden", s.request("conv.invite", conv=chan["id"], users=[owner.user_id]))
    await asyncio.gather(o.close(), s.close())


async def test_joined_history_hides_earlier_messages_and_full_history_shows_them(server, make_user):
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    a = await Client.connect(server.base_url, alice.token)
    joined = (await a.request("conv.create", kind="group", members=[]))["conv"]["id"]
    full = (await a.request("conv.create", kind="group", members=[], history="full"))["conv"]["id"]
    for conv in (joined, full):
        await a.send(conv, "before")
        await a.request("conv.invite", conv=conv, users=[bob.user_id])
        await a.send(conv, "after")
    b = await Client.connect(server.base_url, bob.token)
    assert [m["text"] for m in (await b.request("history", conv=joined))["messages"]] == ["after"]
    assert [m["text"] for m in (await b.request("history", conv=full))["messages"]] == ["before", "after"]
    synced = {e["conv"]: [m["text"] for m in e["messages"]] for e in (await b.request("sync"))["convs"]}
    assert synced == {joined: ["after"], full: ["before", "after"]}
    await expect_error("not_found", b.request("react", conv=joined, seq=1, emoji="👍", on=True))
    await expect_error("bad_request", b.send(joined, "re", reply_to=1))
    # Leaving and rejoining starts a new window: what was said meanwhile stays hidden.
    await a.request("conv.invite", conv=joined, users=[carol.user_id])
    c = await Client.connect(server.base_url, carol.token)
    await c.request("conv.leave", conv=joined)
    await a.send(joined, "while carol was away")
    await a.request("conv.invite", conv=joined, users=[carol.user_id])
    await a.send(joined, "welcome back")
    assert [m["text"] for m in (await c.request("history", conv=joined))["messages"]] == ["welcome back"]
    await asyncio.gather(a.close(), b.close(), c.close())


async def test_public_rooms_can_be_joined_and_private_ones_cannot(server, make_user):
    alice, bob = await make_user(), await make_user()
    a = await Client.connect(server.base_url, alice.token)
    b = await Client.connect(server.base_url, bob.token)
    public = (await a.request("conv.create", kind="group", members=[], visibility="public"))["conv"]["id"]
    private = (await a.request("conv.create", kind="group", members=[]))["conv"]["id"]
    await a.send(public, "hello world")
    err = await expect_error("forbidden", b.request("history", conv=public))
    assert "join" in err.message
    await expect_error("not_found", b.request("conv.join", conv=private))
    view = (await b.request("conv.join", conv=public))["conv"]
    assert (view["id"], view["role"], view["visibility"]) == (public, "member", "public")
    await event_where(a, "member.joined", conv=public, user=bob.user_id, role="member")
    assert (await b.request("conv.join", conv=public))["conv"]["id"] == public  # joining twice is harmless
    await b.send(public, "hi all")
    texts = [(await a.next_event("message.new", conv=public))["message"]["text"] for _ in range(2)]
    assert texts == ["hello world", "hi all"]
    await asyncio.gather(a.close(), b.close())


async def test_password_rooms_need_the_password(server, make_user):
    alice, bob = await make_user(), await make_user()
    a = await Client.connect(server.base_url, alice.token)
    b = await Client.connect(server.base_url, bob.token)
    room = (await a.request("conv.create", kind="group", members=[], visibility="public",
                            password="open sesame"))["conv"]
    assert room["has_password"] is True and "password" not in room
    await expect_error("forbidden", b.request("conv.join", conv=room["id"]))
    await expect_error("forbidden", b.request("conv.join", conv=room["id"], password="open barley"))
    assert (await b.request("conv.join", conv=room["id"], password="open sesame"))["conv"]["role"] == "member"
    await expect_error("bad_request", a.request("conv.create", kind="group", members=[], password="private pw"))
    await asyncio.gather(a.close(), b.close())


async def test_invites_need_admin_and_announce_the_conversation_to_the_invitee(server, make_user):
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    a = await Client.connect(server.base_url, alice.token)
    b = await Client.connect(server.base_url, bob.token)
    c = await Client.connect(server.base_url, carol.token)
    conv = (await a.request("conv.create", kind="group", members=[bob.user_id]))["conv"]["id"]
    await expect_error("forbidden", b.request("conv.invite", conv=conv, users=[carol.user_id]))
    await expect_error("not_found", a.request("conv.invite", conv=conv, users=["u-nobody"]))
    await a.request("conv.invite", conv=conv, users=[carol.user_id])
    announced = await c.next_event("conv.updated")
    assert announced["conv"]["id"] == conv and announced["conv"]["role"] == "member"
    await event_where(b, "member.joined", conv=conv, user=carol.user_id, by=alice.user_id)
    await asyncio.gather(a.close(), b.close(), c.close())


async def test_leaving_stops_events_and_an_owner_leaving_hands_over(server, make_user):
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    a = await Client.connect(server.base_url, alice.token)
    b = await Client.connect(server.base_url, bob.token)
    conv = (await a.request("conv.create", kind="group", members=[bob.user_id, carol.user_id]))["conv"]["id"]
    await a.request("conv.leave", conv=conv)
    await event_where(a, "member.left", conv=conv, user=alice.user_id)  # the leaver hears it too
    updated = await b.next_event("member.updated", conv=conv)
    assert updated["role"] == "owner" and updated["user"] in (bob.user_id, carol.user_id)
    await b.send(conv, "after alice left")
    with pytest.raises(TimeoutError):
        await a.next_event("message.new", conv=conv, timeout=0.5)
    await expect_error("not_found", a.request("history", conv=conv))
    await asyncio.gather(a.close(), b.close())


async def test_no_setting_turns_the_policy_off(fresh_server):
    """PARLEY_BENCH_ALLOW_ALL=1 once made sends skip every rule (a channel's subscriber could post):
    nothing an operator sets may disable authorization (benchmarks compose an allow-all core)."""
    from parley.sdk import register

    proc = fresh_server(PARLEY_BENCH_ALLOW_ALL="1")
    owner, sub = [await register(proc.base_url, name, "correct horse") for name in ("owner", "subscriber")]
    o = await Client.connect(proc.base_url, owner.token)
    s = await Client.connect(proc.base_url, sub.token)
    chan = (await o.request("conv.create", kind="channel", members=[sub.user_id], title="news"))["conv"]["id"]
    await expect_error("forbidden", s.send(chan, "may I?"))
    await asyncio.gather(o.close(), s.close())
