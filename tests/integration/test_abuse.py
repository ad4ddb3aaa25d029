"""Abuse resistance on a real `parley dev` (issue 12, findings 1 and 5): expensive checks stay off
the writer's loop, and every write is limited and moderated like a send."""

from __future__ import annotations

import asyncio
import time

import pytest

from parley.errors import ParleyError
from parley.sdk import Client, register
from tests.integration.test_access import event_where

pytestmark = pytest.mark.integration


async def outcomes(futures: list[asyncio.Future]) -> list[str]:
    """The code of each answer: "ok", or the error's code."""
    out = []
    for result in await asyncio.gather(*futures, return_exceptions=True):
        out.append(result.code if isinstance(result, ParleyError) else "ok" if isinstance(result, dict) else
                   repr(result))
    return out


async def test_a_flood_of_room_password_guesses_leaves_other_conversations_fast(fresh_server):
    """136 guesses/s once stalled every conversation of the writer (argon2 ran inside its batches):
    guesses are now limited per user and per room before any hashing, and checked at the gateway."""
    proc = fresh_server()
    owner, alice, bob, *attackers = [await register(proc.base_url, f"user{i}", "correct horse") for i in range(6)]
    o = await Client.connect(proc.base_url, owner.token)
    room = (await o.request("conv.create", kind="group", visibility="public", password="open sesame"))["conv"]["id"]
    a = await Client.connect(proc.base_url, alice.token)
    chat = (await a.request("conv.create", kind="group", members=[bob.user_id]))["conv"]["id"]
    guessers = [await Client.connect(proc.base_url, x.token) for x in attackers]

    async def guess(client: Client) -> list[str]:
        return await outcomes([await client.submit("conv.join", conv=room, password=f"guess {n}")
                               for n in range(150)])

    flood = [asyncio.create_task(guess(g)) for g in guessers]
    latencies = []
    for n in range(40):
        started = time.monotonic()
        await a.send(chat, f"message {n}")
        latencies.append(time.monotonic() - started)
    answers = [code for codes in await asyncio.gather(*flood) for code in codes]
    latencies.sort()
    assert latencies[int(len(latencies) * 0.99)] < 1.0, latencies[-5:]
    assert set(answers) <= {"forbidden", "rate_limited"}
    assert answers.count("rate_limited") > 0.8 * len(answers)  # well beyond the limit: refused unhashed
    # The right password still opens the room to someone who did not guess.
    b = await Client.connect(proc.base_url, bob.token)
    assert (await b.request("conv.join", conv=room, password="open sesame"))["conv"]["role"] == "member"
    await asyncio.gather(o.close(), a.close(), b.close(), *(g.close() for g in guessers))


#: A well-formed request of every op but hello, ping and received (gathered per conversation into
#: one command per interval, gateway/received.py), on a conversation that does not exist:
#: the limit is counted before anything is looked up, so refusals count too.
SAMPLES: dict[str, dict[str, object]] = {
    "send": {"conv": "c-nope", "cmid": "m", "text": "hi"},
    "edit": {"conv": "c-nope", "seq": 1, "text": "hi"},
    "delete": {"conv": "c-nope", "seq": 1},
    "react": {"conv": "c-nope", "seq": 1, "emoji": "👍", "on": True},
    "read": {"conv": "c-nope", "seq": 1},
    "pin": {"conv": "c-nope", "seq": 1},
    "conv.create": {"kind": "group", "members": []},
    "conv.invite": {"conv": "c-nope", "users": ["u-nobody"]},
    "conv.join": {"conv": "c-nope"},
    "conv.leave": {"conv": "c-nope"},
    "invite.accept": {"conv": "c-nope"},
    "invite.decline": {"conv": "c-nope"},
    "conv.update": {"conv": "c-nope", "title": "t"},
    "member.role": {"conv": "c-nope", "user": "u-nobody", "role": "member"},
    **{op: {"conv": "c-nope", "user": "u-nobody"}
       for op in ("member.mute", "member.unmute", "member.kick", "member.ban", "member.unban")},
    "user.block": {"user": "u-nobody"},
    "user.unblock": {"user": "u-nobody"},
    "history": {"conv": "c-nope"},
    "sync": {},
    "conv.list": {},
    "invite.list": {},
    "presence": {"users": ["u-nobody"]},
    "typing": {"conv": "c-nope"},
    "conv.members": {"conv": "c-nope"},
    "conv.sanctions": {"conv": "c-nope"},
    "receipts": {"conv": "c-nope", "seq": 1},
    "auth": {"token": "not-a-token"},
    "call.start": {"conv": "c-nope", "media": "audio"},
    **{op: {"call": "c-nope-k1"} for op in ("call.join", "call.decline", "call.leave", "call.end")},
    "call.settings": {"conv": "c-nope", "enabled": False},
}


async def test_every_request_has_a_per_user_rate_limit(fresh_server):
    """Only `send` was limited: 200 edits went through in 1.2 s. Every write op now counts against
    its family's limit (parley.limits.RATES), each family a setting; so does every read, which
    costs the store a query."""
    from typing import get_args

    from parley import frames as F
    from parley.limits import RATES

    ops = sorted(t.__struct_config__.tag for t in get_args(F.AnyRequest) if t not in (F.Hello, F.Ping, F.Received))
    assert sorted(SAMPLES) == ops  # a new op needs a sample here
    env = {f"PARLEY_{family.upper()}_BURST": "2" for family in set(RATES.values())}
    proc = fresh_server(**env)
    for op in ops:
        user = await register(proc.base_url, "w" + op.replace(".", "_"), "correct horse")
        client = await Client.connect(proc.base_url, user.token)
        answers = await outcomes([await client.submit(op, **SAMPLES[op]) for _ in range(3)])
        assert "rate_limited" not in answers[:2] and answers[2] == "rate_limited", (op, answers)
        await client.close()


async def test_edits_obey_slow_mode_and_read_only_like_sends(server, make_user):
    """200 edits once went through in 1.2 s under a one-hour slow mode, and members edited their
    old messages in a read-only room."""
    owner, member = await make_user(), await make_user()
    o = await Client.connect(server.base_url, owner.token)
    m = await Client.connect(server.base_url, member.token)
    conv = (await o.request("conv.create", kind="group", members=[member.user_id]))["conv"]["id"]
    seq = (await m.send(conv, "first"))["seq"]
    await o.request("conv.update", conv=conv, slow_mode_s=3600)
    answers = await asyncio.gather(*[m.request("edit", conv=conv, seq=seq, text=f"edit {n}") for n in range(10)],
                                   return_exceptions=True)
    assert all(isinstance(a, ParleyError) and a.rule == "slow_mode" for a in answers), answers
    await o.request("conv.update", conv=conv, slow_mode_s=0, read_only=True)
    with pytest.raises(ParleyError) as refused:
        await m.request("edit", conv=conv, seq=seq, text="rewritten history")
    assert refused.value.rule == "read_only"
    assert (await o.request("history", conv=conv))["messages"][0]["text"] == "first"
    await asyncio.gather(o.close(), m.close())


async def test_reactions_are_emoji_and_a_message_takes_a_bounded_number(server, make_user):
    """Reactions took any 32 characters ("BUY CHEAP www.spam.tld" reached every member, from muted
    users too) and 300 distinct ones fit on one message."""
    owner, sub = await make_user(), await make_user()
    o = await Client.connect(server.base_url, owner.token)
    s = await Client.connect(server.base_url, sub.token)
    chan = (await o.request("conv.create", kind="channel", members=[sub.user_id], title="news"))["conv"]["id"]
    seq = (await o.send(chan, "announcement"))["seq"]
    with pytest.raises(ParleyError) as refused:
        await s.request("react", conv=chan, seq=seq, emoji="BUY CHEAP www.spam.tld", on=True)
    assert refused.value.code == "bad_request"
    await s.request("react", conv=chan, seq=seq, emoji="🎉", on=True)  # a subscriber reacts with emoji
    emoji = ["😀", "😂", "😍", "😎", "🤔", "😴", "😡", "👍", "👎", "👏", "🙏", "💯", "🔥", "🎉", "❤️", "💔", "⭐",
             "🚀", "🍕", "☕", "🐍", "🦀", "🌍", "🌙"]
    answers = await outcomes([await o.submit("react", conv=chan, seq=seq, emoji=e, on=True) for e in emoji])
    assert answers.count("ok") <= 3 and "conflict" in answers  # 3 per user by default
    await o.request("member.mute", conv=chan, user=sub.user_id)
    with pytest.raises(ParleyError) as refused:
        await s.request("react", conv=chan, seq=seq, emoji="👍", on=True)
    assert refused.value.rule == "muted"
    message = (await o.request("history", conv=chan))["messages"][0]
    assert sum(len(users) for users in message["reactions"].values()) <= 4
    await asyncio.gather(o.close(), s.close())


async def test_a_message_is_edited_a_bounded_number_of_times(fresh_server):
    """400 edits of 16 KB once reached every member as 6.5 MB in 1.7 s: the edit rate limit and a
    cap on edits per message (counted in the store) bound what one message can push."""
    proc = fresh_server(PARLEY_MAX_EDITS_PER_MESSAGE="3")
    alice, bob = [await register(proc.base_url, name, "correct horse") for name in ("alice", "bob")]
    a = await Client.connect(proc.base_url, alice.token)
    conv = (await a.request("conv.create", kind="group", members=[bob.user_id]))["conv"]["id"]
    seq = (await a.send(conv, "draft"))["seq"]
    for n in range(3):
        await a.request("edit", conv=conv, seq=seq, text="x" * 16_000 + str(n))
    with pytest.raises(ParleyError) as refused:
        await a.request("edit", conv=conv, seq=seq, text="one more")
    assert refused.value.code == "conflict"
    assert (await a.request("history", conv=conv))["messages"][0]["text"].endswith("2")
    await a.close()


async def test_a_typing_flood_reaches_members_once_per_interval(server, make_user):
    """300 of 300 typing signals once fanned out: a session's extras are answered ok and dropped."""
    alice, bob = await make_user(), await make_user()
    a = await Client.connect(server.base_url, alice.token)
    b = await Client.connect(server.base_url, bob.token)
    conv = (await a.request("conv.create", kind="group", members=[bob.user_id]))["conv"]["id"]
    assert set(await outcomes([await a.submit("typing", conv=conv) for _ in range(100)])) == {"ok"}
    await b.next_event("typing")
    await asyncio.sleep(0.5)
    assert [e for e in b.drain_events() if e["type"] == "typing"] == []
    await asyncio.gather(a.close(), b.close())


async def privacy(base_url: str, token: str, **choice: str) -> tuple[int, dict]:
    """PATCH /v1/me/privacy with `choice`, or GET it without."""
    import aiohttp

    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        method = "PATCH" if choice else "GET"
        async with http.request(method, f"{base_url}/v1/me/privacy", json=choice or None) as resp:
            return resp.status, await resp.json()


async def test_adding_someone_to_a_conversation_respects_their_choice_and_their_blocks(server, make_user):
    """One user once put a stranger into 300 new groups. Who may add a user directly is now the
    user's choice; anyone else gets an invitation, and a user who blocks the inviter gets neither."""
    stranger, shy, friend = await make_user(), await make_user(), await make_user()
    assert await privacy(server.base_url, shy.token) == (200, {"who_may_add": "anyone"})  # Telegram's default
    assert await privacy(server.base_url, shy.token, who_may_add="contacts") == (200, {"who_may_add": "contacts"})
    assert (await privacy(server.base_url, shy.token, who_may_add="strangers"))[0] == 422
    x = await Client.connect(server.base_url, stranger.token)
    s = await Client.connect(server.base_url, shy.token)
    f = await Client.connect(server.base_url, friend.token)
    await f.request("conv.create", kind="direct", members=[shy.user_id])  # friends: they share a chat

    created = await x.request("conv.create", kind="group", members=[shy.user_id], title="cheap watches")
    assert created["invited"] == [shy.user_id]
    spam = created["conv"]["id"]
    invite = await s.next_event("invite.new")
    assert (invite["conv"], invite["by"], invite["title"]) == (spam, stranger.user_id, "cheap watches")
    assert spam not in [c["id"] for c in (await s.request("conv.list"))["convs"]]
    assert [i["conv"] for i in (await s.request("invite.list"))["invites"]] == [spam]
    await s.request("invite.decline", conv=spam)
    assert (await s.next_event("invite.removed"))["accepted"] is False
    assert (await s.request("invite.list"))["invites"] == []

    # A contact adds directly; an invitation accepted makes a member, by the inviter.
    group = (await f.request("conv.create", kind="group", members=[shy.user_id]))["conv"]["id"]
    assert group in [c["id"] for c in (await s.request("conv.list"))["convs"]]
    assert (await x.request("conv.invite", conv=spam, users=[shy.user_id]))["invited"] == [shy.user_id]
    assert (await s.request("invite.accept", conv=spam))["conv"]["role"] == "member"
    joined = await event_where(x, "member.joined", conv=spam, user=shy.user_id)
    assert joined["by"] == stranger.user_id

    # Blocks win: a blocked inviter can neither add nor invite, and an invitation from them is hidden.
    pending = (await x.request("conv.create", kind="group", members=[shy.user_id]))["conv"]["id"]
    await s.request("user.block", user=stranger.user_id)
    with pytest.raises(ParleyError) as refused:
        await x.request("conv.create", kind="group", members=[shy.user_id])
    assert refused.value.rule == "blocked"
    assert pending not in [i["conv"] for i in (await s.request("invite.list"))["invites"]]
    await asyncio.gather(x.close(), s.close(), f.close())
