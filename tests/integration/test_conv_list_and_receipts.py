"""What a client needs to render without extra requests, end to end: `conv.list` entries with
their newest message and the profiles to name people, `conv.members` pages with profiles, and the
delivered state (`received` -> `delivered` events, `receipts` per member or counted)."""

from __future__ import annotations

import pytest

from parley.sdk import Client
from tests.integration.test_people import call
from tests.integration.test_uploads import upload

pytestmark = pytest.mark.integration


async def test_conv_list_entries_carry_the_last_message_and_the_profiles_to_show_them(server, make_user):
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    await call(server.base_url, "PATCH", "/v1/me/profile", bob.token, json={"display_name": "Bobby"})
    async with await Client.connect(server.base_url, alice.token) as a, \
            await Client.connect(server.base_url, bob.token) as b:
        direct = (await a.request("conv.create", kind="direct", members=[bob.user_id]))["conv"]["id"]
        group = (await a.request("conv.create", kind="group", members=[bob.user_id, carol.user_id]))["conv"]["id"]
        empty = (await a.request("conv.create", kind="group", members=[carol.user_id]))["conv"]["id"]
        await b.send(direct, "hello\nthere   alice " + "x" * 200)
        att = await upload(server.base_url, alice.token, group, "f.txt", "text/plain", b"file")
        await a.send(group, "", attachments=[att["id"]])
        listed = await a.request("conv.list")
    by_id = {c["id"]: c for c in listed["convs"]}
    last = by_id[direct]["last_message"]
    assert (last["seq"], last["sender"], last["attachments"], last["deleted"]) == (1, bob.user_id, 0, False)
    assert last["preview"].startswith("hello there alice x") and len(last["preview"]) == 140
    assert by_id[direct]["unread"] == 1 and last["ts"] > 0
    assert by_id[group]["last_message"]["preview"] == "1 attachment"
    assert by_id[empty]["last_message"] is None
    assert listed["profiles"][bob.user_id]["display_name"] == "Bobby"
    assert alice.user_id not in listed["profiles"]


async def test_conv_members_pages_members_with_their_profiles(server, make_user):
    owner, *others = [await make_user() for _ in range(4)]
    async with await Client.connect(server.base_url, owner.token) as o:
        conv = (await o.request("conv.create", kind="group", members=[u.user_id for u in others]))["conv"]["id"]
        first = await o.request("conv.members", conv=conv, limit=3)
        rest = await o.request("conv.members", conv=conv, after=first["members"][-1]["user"])
    everyone = sorted(u.user_id for u in [owner, *others])
    assert [m["user"] for m in first["members"] + rest["members"]] == everyone
    assert (first["more"], rest["more"]) == (True, False)
    assert set(first["profiles"]) == {m["user"] for m in first["members"]}
    roles = {m["user"]: m["role"] for m in first["members"] + rest["members"]}
    assert roles[owner.user_id] == "owner"
    outsider = await make_user()
    async with await Client.connect(server.base_url, outsider.token) as x:
        with pytest.raises(Exception) as err:
            await x.request("conv.members", conv=conv)
    assert getattr(err.value, "code", None) == "not_found"


async def test_received_tells_the_sender_delivered_then_read_per_member(server, make_user):
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    async with await Client.connect(server.base_url, alice.token) as a, \
            await Client.connect(server.base_url, bob.token) as b, \
            await Client.connect(server.base_url, carol.token) as c:
        conv = (await a.request("conv.create", kind="group", members=[bob.user_id, carol.user_id]))["conv"]["id"]
        seq = (await a.send(conv, "did you get it?"))["seq"]
        for s in range(3):  # acknowledgements may come per message, several times: gathered
            await b.request("received", conv=conv, seq=seq)
        delivered = await a.next_event("delivered", conv=conv, timeout=5)
        assert (delivered["user"], delivered["seq"]) == (bob.user_id, seq)
        receipts = await a.request("receipts", conv=conv, seq=seq)
        assert (receipts["members"], receipts["delivered"], receipts["read"]) == (2, [bob.user_id], [])
        await c.request("read", conv=conv, seq=seq)  # reading counts as receiving
        await a.next_event("read", conv=conv, timeout=5)
        receipts = await a.request("receipts", conv=conv, seq=seq)
        assert receipts["delivered"] == sorted([bob.user_id, carol.user_id]) and receipts["read"] == [carol.user_id]
        assert (receipts["delivered_count"], receipts["read_count"]) == (2, 1)
        with pytest.raises(TimeoutError):  # one cursor move, one event
            await a.next_event("delivered", conv=conv, timeout=1.2)


async def test_receipts_in_channels_are_counts_only(server, make_user):
    owner, reader = await make_user(), await make_user()
    async with await Client.connect(server.base_url, owner.token) as o, \
            await Client.connect(server.base_url, reader.token) as r:
        conv = (await o.request("conv.create", kind="channel", members=[reader.user_id]))["conv"]["id"]
        seq = (await o.send(conv, "news"))["seq"]
        await r.request("received", conv=conv, seq=seq)
        with pytest.raises(TimeoutError):  # channels send no delivered events
            await o.next_event("delivered", conv=conv, timeout=1.2)
        receipts = await o.request("receipts", conv=conv, seq=seq)
    assert (receipts["delivered_count"], receipts["read_count"], receipts["delivered"], receipts["read"]) == (
        1, 0, None, None)
