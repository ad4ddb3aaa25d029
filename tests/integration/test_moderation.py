"""Conversation moderation over the protocol: roles, mutes that end on time, kicks, bans that
survive a restart, settings, pins, blocking, spam control and the audit trail, on real servers."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from parley.adapters.sqlite.store import SqliteStore
from parley.app.stores import DB_FILE
from parley.errors import ParleyError
from parley.records import AuditQuery
from parley.sdk import Client, register
from tests.integration.test_access import event_where

pytestmark = pytest.mark.integration


async def refused(coro, rule: str | None, code: str = "forbidden") -> ParleyError:
    with pytest.raises(ParleyError) as err:
        await coro
    assert (err.value.code, err.value.rule) == (code, rule), err.value
    assert err.value.message
    return err.value


async def test_a_moderator_mutes_for_two_seconds_kicks_and_an_admin_bans(server, make_user):
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    a, b, c = [await Client.connect(server.base_url, u.token) for u in (alice, bob, carol)]
    conv = (await a.request("conv.create", kind="group", members=[bob.user_id, carol.user_id],
                            visibility="public"))["conv"]["id"]
    await refused(b.request("member.mute", conv=conv, user=carol.user_id), "role")
    await a.request("member.role", conv=conv, user=carol.user_id, role="moderator")
    assert (await event_where(c, "member.updated", conv=conv, user=carol.user_id))["role"] == "moderator"
    await refused(c.request("member.mute", conv=conv, user=alice.user_id), "outranked")

    muted = await c.request("member.mute", conv=conv, user=bob.user_id, duration_s=2, reason="cool off")
    started = time.monotonic()
    event = await event_where(b, "member.muted", conv=conv, user=bob.user_id)
    assert (event["by"], event["reason"], event["until"]) == (carol.user_id, "cool off", muted["until"])
    err = await refused(b.send(conv, "let me talk"), "muted")
    assert "muted" in err.message
    await asyncio.sleep(max(0.0, 2.05 - (time.monotonic() - started)))
    assert (await b.send(conv, "thanks"))["seq"] >= 1  # the mute ended on time, with no unmute

    await c.request("member.kick", conv=conv, user=bob.user_id, reason="off topic")
    left = await event_where(b, "member.left", conv=conv, user=bob.user_id)
    assert (left["by"], left["reason"]) == (carol.user_id, "off topic")
    await refused(b.send(conv, "still here?"), "not_member")
    await b.request("conv.join", conv=conv)  # a kick is not a ban

    await refused(c.request("member.ban", conv=conv, user=bob.user_id), "role")  # bans need admin
    await a.request("member.ban", conv=conv, user=bob.user_id, reason="third strike")
    banned = await event_where(b, "member.banned", conv=conv, user=bob.user_id)
    assert (banned["by"], banned["until"]) == (alice.user_id, None)
    err = await refused(b.request("conv.join", conv=conv), "banned")
    assert "banned" in err.message
    await refused(a.request("conv.invite", conv=conv, users=[bob.user_id]), "target_banned")
    await a.request("member.unban", conv=conv, user=bob.user_id)
    assert (await b.request("conv.join", conv=conv))["conv"]["role"] == "member"
    await asyncio.gather(a.close(), b.close(), c.close())


async def test_conversation_settings_slow_mode_read_only_and_pins(server, make_user):
    alice, bob = await make_user(), await make_user()
    a, b = [await Client.connect(server.base_url, u.token) for u in (alice, bob)]
    conv = (await a.request("conv.create", kind="group", members=[bob.user_id]))["conv"]["id"]
    await refused(b.request("conv.update", conv=conv, title="mine now"), "role")
    await refused(a.request("conv.update", conv=conv), None, "bad_request")  # nothing to change
    view = (await a.request("conv.update", conv=conv, title="quiet room", slow_mode_s=60))["conv"]
    assert (view["title"], view["slow_mode_s"], view["read_only"]) == ("quiet room", 60, False)
    while (told := await b.next_event("conv.updated"))["conv"]["title"] != "quiet room":
        pass
    assert told["conv"]["role"] == "member"  # each member gets their own view
    await b.send(conv, "one")
    err = await refused(b.send(conv, "two"), "slow_mode")
    assert err.retry_after_ms is not None and 55_000 < err.retry_after_ms <= 60_000
    await a.send(conv, "owners are not slowed")
    await a.send(conv, "not at all")
    await a.request("conv.update", conv=conv, read_only=True, slow_mode_s=0)
    await refused(b.send(conv, "three"), "read_only")

    await refused(b.request("pin", conv=conv, seq=1), "role")
    await a.request("pin", conv=conv, seq=1)
    pin = await event_where(b, "pin", conv=conv)
    assert (pin["seq"], pin["on"], pin["by"]) == (1, True, alice.user_id)
    listed = {c["id"]: c for c in (await b.request("conv.list"))["convs"]}
    assert listed[conv]["pinned"] == [1] and listed[conv]["read_only"] is True
    await a.request("conv.update", conv=conv, permissions={"pin": "member"})
    await b.request("pin", conv=conv, seq=1, on=False)
    assert {c["id"]: c for c in (await a.request("conv.list"))["convs"]}[conv]["pinned"] == []
    await asyncio.gather(a.close(), b.close())


async def test_blocking_stops_direct_messages_invites_and_typing_either_way(server, make_user):
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    a, b, c = [await Client.connect(server.base_url, u.token) for u in (alice, bob, carol)]
    direct = (await a.request("conv.create", kind="direct", members=[bob.user_id]))["conv"]["id"]
    group = (await c.request("conv.create", kind="group", members=[alice.user_id, bob.user_id]))["conv"]["id"]
    await a.send(direct, "hi bob")

    await b.request("user.block", user=alice.user_id)
    assert (await b.next_event("user.blocked"))["user"] == alice.user_id
    err = await refused(a.send(direct, "hello?"), "blocked")
    assert "does not accept" in err.message
    await refused(b.send(direct, "nope"), "blocking")
    await refused(a.request("conv.create", kind="direct", members=[bob.user_id]), "blocked")
    mine = (await a.request("conv.create", kind="group", members=[]))["conv"]["id"]
    await refused(a.request("conv.invite", conv=mine, users=[bob.user_id]), "blocked")
    await refused(a.request("conv.create", kind="group", members=[bob.user_id]), "blocked")

    # Typing in a group they share is hidden between them, and still reaches everyone else. A
    # gateway's view of blocks may be cached for up to 10 s (when they are on different ones).
    # A session's typing fans out once per conversation per 3 s: each try waits that long.
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        b.drain_events()
        a.drain_events()
        await a.request("typing", conv=group)
        assert (await c.next_event("typing"))["user"] == alice.user_id
        await b.request("typing", conv=group)
        assert (await c.next_event("typing"))["user"] == bob.user_id
        await asyncio.sleep(0.3)
        leaked = [e for e in [*b.drain_events(), *a.drain_events()] if e["type"] == "typing"]
        if not leaked:
            break
        assert asyncio.get_running_loop().time() < deadline, leaked
        await asyncio.sleep(3)

    await b.request("user.unblock", user=alice.user_id)
    assert (await a.send(direct, "friends again"))["seq"] == 2
    await asyncio.gather(a.close(), b.close(), c.close())


FILTER_ENV = {"PARLEY_FILTER_WORDS": "scam,free money",
              "PARLEY_POLICY": json.dumps({"flood_repeats": 3, "flood_mute_s": 3600}),
              "PARLEY_SEND_BURST": "1000"}


async def test_bans_and_mutes_survive_a_restart_and_every_action_is_audited(fresh_server):
    srv = fresh_server(**FILTER_ENV)
    owner, spammer, member = [await register(srv.base_url, f"mod{i}", "correct horse") for i in range(3)]
    o, s = [await Client.connect(srv.base_url, u.token) for u in (owner, spammer)]
    conv = (await o.request("conv.create", kind="group", members=[spammer.user_id, member.user_id],
                            visibility="public"))["conv"]["id"]
    # The content filter plugged in by configuration, and the automatic flood mute.
    await refused(s.send(conv, "Free money, click here"), "content_filter")
    for _ in range(2):
        await s.send(conv, "JOIN MY CHANNEL")
    await refused(s.send(conv, "JOIN MY CHANNEL"), "flood")
    await refused(s.send(conv, "sorry"), "muted")
    await o.request("member.mute", conv=conv, user=member.user_id, reason="rude")
    await o.request("member.ban", conv=conv, user=spammer.user_id, reason="spam")
    await asyncio.gather(o.close(), s.close())

    srv.stop()
    srv.start()
    s, m = [await Client.connect(srv.base_url, u.token) for u in (spammer, member)]
    await refused(s.request("conv.join", conv=conv), "banned")
    await refused(m.send(conv, "am I still muted?"), "muted")
    await asyncio.gather(s.close(), m.close())
    srv.stop()

    store = SqliteStore(srv.data_dir / DB_FILE, synchronous="NORMAL")
    await store.open()
    try:
        entries = list(reversed(await store.audit_entries(AuditQuery(limit=100))))
    finally:
        await store.close()
    summary = [(e.actor, e.action, e.target) for e in entries]
    assert summary == [
        ("system", "message.reject", spammer.user_id),
        ("system", "member.mute", spammer.user_id),
        (owner.user_id, "member.mute", member.user_id),
        (owner.user_id, "member.ban", spammer.user_id),
    ]
    assert entries[1].details["auto"] is True and entries[1].details["rule"] == "flood"
    assert all(e.conv == conv and e.reason for e in entries)
