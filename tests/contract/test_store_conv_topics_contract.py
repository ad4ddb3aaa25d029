"""The store contract for a conversation's topic (kept with its settings, read wherever the
conversation is) and for the list of its mutes and bans (`conv.sanctions`). Every adapter must
pass these unchanged (conftest.py)."""

from __future__ import annotations

import msgspec

from parley.records import CreateConv, DropSanction, Needs, PutMember, PutSanction, SanctionRow, UpdateConv
from tests.contract.samples import conv_row, member, seeded


async def test_a_topic_is_read_back_wherever_the_conversation_is_and_survives_reopening(reopen):
    store = await seeded(reopen)
    row = conv_row()
    row.topic = "Plans for the launch"
    await store.apply([UpdateConv(row)])
    store = await reopen()
    assert (await store.prefetch(Needs(convs={"c1"}))).convs["c1"].row.topic == "Plans for the launch"
    found = await store.membership("c1", "b")
    assert found is not None and found[0].topic == "Plans for the launch"
    assert [c.topic for c, _, _ in await store.conv_list("b")] == ["Plans for the launch"]
    inspected = await store.conv_members("c1")
    assert inspected is not None and inspected[0].topic == "Plans for the launch"
    # Cleared: read back as none; the other settings as they were.
    await store.apply([UpdateConv(conv_row())])
    got = (await store.prefetch(Needs(convs={"c1"}))).convs["c1"].row
    assert (got.topic, got.title) == (None, "t")


async def test_a_conversation_created_and_given_a_topic_in_one_batch_keeps_it(reopen):
    store = await reopen()
    row = conv_row("c2")
    given = msgspec.structs.replace(row, topic="from the start")
    await store.apply([CreateConv(row), PutMember(member("a", conv="c2", role="owner")), UpdateConv(given)])
    assert (await store.prefetch(Needs(convs={"c2"}))).convs["c2"].row.topic == "from the start"
    assert [c.topic for c, _, _ in await store.conv_list("a")] == ["from the start"]


def sanction(user: str, kind: str, at: int, conv: str = "c1") -> SanctionRow:
    return SanctionRow(conv=conv, user=user, kind=kind, until=at + 100, by="a", at=at, reason=None)


async def test_a_conversations_mutes_and_bans_are_listed_oldest_first(reopen):
    store = await seeded(reopen)
    await store.apply([PutSanction(sanction("x", "ban", 30)), PutSanction(sanction("b", "mute", 10)),
                       PutSanction(sanction("b", "ban", 20)), PutSanction(sanction("y", "mute", 5, conv="c9")),
                       PutSanction(sanction("z", "mute", 40))])
    await store.apply([DropSanction("c1", "z", "mute")])
    store = await reopen()
    assert await store.sanctions("c1") == [sanction("b", "mute", 10), sanction("b", "ban", 20),
                                           sanction("x", "ban", 30)]
    assert await store.sanctions("nope") == []
