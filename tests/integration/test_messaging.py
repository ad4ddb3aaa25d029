"""The message path over real WebSockets against a real `parley dev`: order, idempotency,
sync, history, multi-device, edits, reactions, receipts, typing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from parley.errors import ParleyError
from parley.sdk import Account, Client
from tests.conftest import ParleyProcess

pytestmark = pytest.mark.integration

MakeUser = Callable[..., Awaitable[Account]]


async def group_of(server: ParleyProcess, users: list[Account], **extra: object) -> tuple[list[Client], str]:
    clients = [await Client.connect(server.base_url, u.token) for u in users]
    created = await clients[0].request("conv.create", kind="group", members=[u.user_id for u in users[1:]],
                                       title="test", **extra)
    return clients, created["conv"]["id"]


async def collect(client: Client, conv: str, n: int, timeout: float = 10.0) -> list[dict]:
    return [(await client.next_event("message.new", conv=conv, timeout=timeout))["message"] for _ in range(n)]


async def close_all(*clients: Client) -> None:
    await asyncio.gather(*(c.close() for c in clients))


async def test_concurrent_senders_get_dense_seqs_and_every_member_sees_one_order(server, make_user):
    users = [await make_user() for _ in range(3)]
    clients, conv = await group_of(server, users)
    per_sender = 25

    async def burst(client: Client, me: int) -> list[int]:
        acks = await asyncio.gather(*(client.send(conv, f"{me}:{i}") for i in range(per_sender)))
        return [a["seq"] for a in acks]

    seqs = await asyncio.gather(*(burst(c, i) for i, c in enumerate(clients)))
    total = per_sender * len(clients)
    assert sorted(s for mine in seqs for s in mine) == list(range(1, total + 1))
    for mine in seqs:  # a session's sends get increasing seqs in the order it sent them
        assert mine == sorted(mine)
    views = [await collect(c, conv, total) for c in clients]
    orders = [[(m["seq"], m["text"]) for m in view] for view in views]
    assert orders[0] == orders[1] == orders[2]
    assert [seq for seq, _ in orders[0]] == list(range(1, total + 1))
    for i, mine in enumerate(seqs):
        texts = {seq: text for seq, text in orders[0]}
        assert [texts[s] for s in mine] == [f"{i}:{k}" for k in range(per_sender)]
    await close_all(*clients)


async def test_a_resend_with_the_same_cmid_after_reconnect_returns_the_original(server, make_user):
    alice, bob = await make_user(), await make_user()
    (a, b), conv = await group_of(server, [alice, bob])
    first = await a.send(conv, "once", cmid="cmid-1")
    await a.close()
    a2 = await Client.connect(server.base_url, alice.token)
    again = await a2.send(conv, "once (retry)", cmid="cmid-1")
    assert (again["seq"], again["ts"]) == (first["seq"], first["ts"])
    history = (await a2.request("history", conv=conv))["messages"]
    assert [(m["seq"], m["text"]) for m in history] == [(first["seq"], "once")]
    other = await a2.send(conv, "twice", cmid="cmid-2")
    assert other["seq"] == first["seq"] + 1
    await close_all(a2, b)


async def test_sync_fills_the_gap_left_by_a_disconnect(server, make_user):
    alice, bob = await make_user(), await make_user()
    (a, b), conv = await group_of(server, [alice, bob])
    await a.send(conv, "before")
    await collect(b, conv, 1)
    await b.close()
    for i in range(60):
        await a.send(conv, f"missed {i}")
    b2 = await Client.connect(server.base_url, bob.token)
    first = await b2.request("sync", since={conv: 1})
    (entry,) = first["convs"]
    assert entry["conv"] == conv and entry["last_seq"] == 61 and entry["more"] is True
    assert [m["seq"] for m in entry["messages"]] == list(range(2, 52))
    assert entry["unread"] == 61 and entry["read_seq"] == 0
    rest = await b2.request("history", conv=conv, after=51, limit=200)
    assert [m["text"] for m in rest["messages"]] == [f"missed {i}" for i in range(50, 60)]
    assert (await b2.request("sync", since={conv: 61}))["convs"] == []
    await close_all(a, b2)


async def test_history_pages_are_exclusive_ascending_and_bounded(server, make_user):
    alice, bob = await make_user(), await make_user()
    (a, b), conv = await group_of(server, [alice, bob])
    # Two senders: one user's burst is capped at 100 sends per 5 s.
    await asyncio.gather(*(a.send(conv, f"m{i}") for i in range(1, 61)))
    await asyncio.gather(*(b.send(conv, f"m{i}") for i in range(61, 121)))
    newest = (await a.request("history", conv=conv))["messages"]
    assert [m["seq"] for m in newest] == list(range(71, 121))
    older = (await a.request("history", conv=conv, before=71, limit=30))["messages"]
    assert [m["seq"] for m in older] == list(range(41, 71))
    after = (await a.request("history", conv=conv, after=110, limit=5))["messages"]
    assert [m["seq"] for m in after] == list(range(111, 116))
    assert (await a.request("history", conv=conv, before=1))["messages"] == []
    whole = (await a.request("history", conv=conv, after=0, limit=200))["messages"]
    assert [m["text"] for m in whole] == [f"m{i}" for i in range(1, 121)]
    for bad in ({"limit": 201}, {"limit": 0}, {"before": 5, "after": 1}, {"before": "x"}):
        with pytest.raises(ParleyError) as err:
            await a.request("history", conv=conv, **bad)
        assert err.value.code == "bad_request"
    await close_all(a, b)


async def test_every_session_of_every_member_gets_each_event(server, make_user):
    alice, bob = await make_user(), await make_user()
    a1 = await Client.connect(server.base_url, alice.token, device_id="phone")
    a2 = await Client.connect(server.base_url, alice.token, device_id="laptop")
    b = await Client.connect(server.base_url, bob.token)
    conv = (await a1.request("conv.create", kind="direct", members=[bob.user_id]))["conv"]["id"]
    ack = await a1.send(conv, "from the phone")
    for client in (a1, a2, b):
        msg = (await client.next_event("message.new", conv=conv))["message"]
        assert (msg["seq"], msg["text"], msg["sender"]) == (ack["seq"], "from the phone", alice.user_id)
    await close_all(a1, a2, b)


async def test_direct_is_unique_per_pair_from_either_side(server, make_user):
    alice, bob = await make_user(), await make_user()
    a = await Client.connect(server.base_url, alice.token)
    b = await Client.connect(server.base_url, bob.token)
    one, two = await asyncio.gather(
        a.request("conv.create", kind="direct", members=[bob.user_id]),
        b.request("conv.create", kind="direct", members=[alice.user_id]),
    )
    assert one["conv"]["id"] == two["conv"]["id"]
    assert one["conv"]["kind"] == "direct" and one["conv"]["history"] == "full"
    # Each side's object names the other, so a client can label the conversation.
    assert (one["conv"]["peer"], two["conv"]["peer"]) == (bob.user_id, alice.user_id)
    announced = await b.next_event("conv.updated")
    assert announced["conv"]["peer"] == alice.user_id
    (listed,) = (await b.request("conv.list"))["convs"]
    assert listed["peer"] == alice.user_id
    group = await a.request("conv.create", kind="group", members=[bob.user_id])
    assert group["conv"]["peer"] is None
    with pytest.raises(ParleyError) as err:
        await a.request("conv.create", kind="direct", members=[bob.user_id, alice.user_id])
    assert err.value.code == "bad_request"
    with pytest.raises(ParleyError) as err:
        await a.request("conv.create", kind="direct", members=["unobody"])
    assert err.value.code == "not_found"
    await close_all(a, b)


async def test_edit_delete_and_react(server, make_user):
    alice, bob = await make_user(), await make_user()
    (a, b), conv = await group_of(server, [alice, bob])
    seq = (await a.send(conv, "draft"))["seq"]
    await collect(b, conv, 1)
    with pytest.raises(ParleyError) as err:
        await b.request("edit", conv=conv, seq=seq, text="not mine")
    assert err.value.code == "forbidden"
    await a.request("edit", conv=conv, seq=seq, text="final")
    edited = (await b.next_event("message.edited"))["message"]
    assert edited["text"] == "final" and edited["edited_at"] is not None
    await b.request("react", conv=conv, seq=seq, emoji="👍", on=True)
    reaction = await a.next_event("reaction")
    assert {k: reaction[k] for k in ("conv", "seq", "emoji", "user", "on")} == \
        {"conv": conv, "seq": seq, "emoji": "👍", "user": bob.user_id, "on": True}
    (stored,) = (await a.request("history", conv=conv))["messages"]
    assert stored["reactions"] == {"👍": [bob.user_id]} and stored["text"] == "final"
    with pytest.raises(ParleyError) as err:
        await b.request("delete", conv=conv, seq=seq)  # a plain member may not delete others'
    assert err.value.code == "forbidden"
    await a.request("delete", conv=conv, seq=seq)
    tomb = (await b.next_event("message.deleted"))["message"]
    assert tomb["deleted"] is True and tomb["text"] is None and tomb["attachments"] == []
    (stored,) = (await b.request("history", conv=conv))["messages"]
    assert stored["deleted"] is True and stored["text"] is None
    with pytest.raises(ParleyError) as err:
        await a.request("edit", conv=conv, seq=seq, text="resurrect")
    assert err.value.code == "conflict"
    with pytest.raises(ParleyError) as err:
        await a.request("edit", conv=conv, seq=99, text="nothing there")
    assert err.value.code == "not_found"
    await close_all(a, b)


async def test_read_cursors_move_forward_and_count_unread(server, make_user):
    alice, bob = await make_user(), await make_user()
    (a, b), conv = await group_of(server, [alice, bob])
    for i in range(5):
        await a.send(conv, f"m{i}")
    (view,) = [c for c in (await b.request("conv.list"))["convs"] if c["id"] == conv]
    assert (view["last_seq"], view["read_seq"], view["unread"]) == (5, 0, 5)
    (mine,) = [c for c in (await a.request("conv.list"))["convs"] if c["id"] == conv]
    assert (mine["read_seq"], mine["unread"]) == (5, 0)  # sending moves the sender's cursor
    await b.request("read", conv=conv, seq=3)
    receipt = await a.next_event("read")
    assert (receipt["conv"], receipt["user"], receipt["seq"]) == (conv, bob.user_id, 3)
    await b.request("read", conv=conv, seq=2)  # backwards: accepted, changes nothing
    (view,) = [c for c in (await b.request("conv.list"))["convs"] if c["id"] == conv]
    assert (view["read_seq"], view["unread"]) == (3, 2)
    with pytest.raises(ParleyError) as err:
        await b.request("read", conv=conv, seq=6)
    assert err.value.code == "bad_request"
    await close_all(a, b)


async def test_typing_reaches_the_others_but_not_the_typist(server, make_user):
    alice, bob = await make_user(), await make_user()
    (a, b), conv = await group_of(server, [alice, bob])
    await a.request("typing", conv=conv)
    signal = await b.next_event("typing")
    assert (signal["conv"], signal["user"]) == (conv, alice.user_id)
    with pytest.raises(TimeoutError):
        await a.next_event("typing", timeout=0.5)
    assert (await a.request("history", conv=conv))["messages"] == []  # never stored
    await close_all(a, b)


async def test_sync_with_an_empty_map_lists_every_conversation_with_messages(server, make_user):
    alice, bob = await make_user(), await make_user()
    (a, b), conv = await group_of(server, [alice, bob])
    empty = (await a.request("conv.create", kind="group", members=[bob.user_id]))["conv"]["id"]
    await a.send(conv, "hi")
    convs = {e["conv"]: e for e in (await b.request("sync", since={}))["convs"]}
    assert conv in convs and empty not in convs
    assert [m["text"] for m in convs[conv]["messages"]] == ["hi"]
    await close_all(a, b)
