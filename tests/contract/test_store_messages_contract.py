"""The store contract, MessageStore: chat_core's batches, the outbox and its relay, and the reads of
conversations, members and messages. Every adapter must pass these unchanged (conftest.py)."""

from __future__ import annotations

import msgspec
import pytest

from parley.errors import Conflict
from parley.records import (
    ConvRow, CreateConv, DropBlock, DropInvitation, DropMember, DropSanction, InsertMessage, InvitationRow, MemberRow, Needs,
    PutBlock, PutInvitation, PutMember, PutOutbox, PutSanction, SanctionRow, SetConvHead, SetDeliveredSeq,
    SetReaction, SetReadSeq, UpdateConv, UpdateMessage,
)
from tests.contract.samples import conv_row, member, message, record, seeded

async def test_a_batch_is_read_back_whole(reopen):
    store = await seeded(reopen)
    ids = await store.apply([
        InsertMessage(message(1)), InsertMessage(message(2)), SetConvHead("c1", 2), SetReadSeq("c1", "a", 2),
        SetReaction("c1", 1, "👍", "b", True), UpdateMessage("c1", 2, "edited", 99, False),
        PutOutbox(record(1)), PutOutbox(record(2)),
    ])
    # The port promises ids that increase in write order, not consecutive ones: Cassandra's are
    # time-ordered, and a batch that crosses a millisecond skips (this flaked under load).
    assert len(ids) == 2 and ids[0] < ids[1]
    facts = await store.prefetch(Needs(convs={"c1"}, users={"a", "zz"}, idem={("c1", "a", "m1"), ("c1", "b", "m1")},
                                       messages={("c1", 1), ("c1", 2), ("c1", 3)}))
    state = facts.convs["c1"]
    assert state.row.last_seq == 2 and set(state.members) == {"a", "b"}
    assert state.members["a"].read_seq == 2 and state.members["a"].role == "owner"
    assert facts.users == set()  # accounts are separate: no user "a" was created
    assert facts.idem == {("c1", "a", "m1"): (1, 10)}
    assert facts.messages[("c1", 1)].reactions == {"👍": ["b"]} and facts.messages[("c1", 1)].mentions == ["b"]
    assert (facts.messages[("c1", 2)].text, facts.messages[("c1", 2)].edited_at) == ("edited", 99)
    assert ("c1", 3) not in facts.messages



async def test_a_messages_edit_count_is_kept_and_a_delete_keeps_it(reopen):
    store = await seeded(reopen)
    await store.apply([InsertMessage(message(1)), InsertMessage(message(2)),
                       UpdateMessage("c1", 2, "sent and edited in one batch", 20, False, 1)])
    await store.apply([UpdateMessage("c1", 1, "again", 30, False, 1)])
    await store.apply([UpdateMessage("c1", 1, "and again", 40, False, 2), UpdateMessage("c1", 2, None, 20, True)])
    store = await reopen()
    facts = await store.prefetch(Needs(messages={("c1", 1), ("c1", 2), ("c1", 3)}))
    assert facts.edits == {("c1", 1): 2, ("c1", 2): 1}  # never edited (or absent): no entry
    assert facts.messages[("c1", 1)].text == "and again" and facts.messages[("c1", 2)].deleted


async def test_invitations_are_kept_by_conversation_and_listed_by_invitee(reopen):
    store = await seeded(reopen)
    await store.apply([CreateConv(conv_row("c2")), PutInvitation(InvitationRow(conv="c2", user="z", by="a", at=7)),
                       PutInvitation(InvitationRow(conv="c1", user="z", by="b", at=5)),
                       PutInvitation(InvitationRow(conv="c1", user="y", by="a", at=6))])
    await store.apply([DropInvitation("c1", "y"), PutInvitation(InvitationRow(conv="c1", user="x", by="a", at=8)),
                       DropInvitation("c1", "x")])  # invited and settled in one batch: gone
    store = await reopen()
    facts = await store.prefetch(Needs(convs={"c1", "c2"}))
    assert facts.convs["c1"].invitations == {"z": InvitationRow(conv="c1", user="z", by="b", at=5)}
    assert list(facts.convs["c2"].invitations) == ["z"]
    listed = await store.invitations("z")
    assert [(i.conv, i.by, i.at, row.id, row.title) for i, row in listed] == [("c1", "b", 5, "c1", "t"),
                                                                             ("c2", "a", 7, "c2", "t")]
    assert await store.invitations("y") == []


async def test_a_seq_is_never_stored_twice_and_a_rejected_batch_leaves_nothing(reopen):
    store = await seeded(reopen)
    await store.apply([InsertMessage(message(1)), SetConvHead("c1", 1)])
    with pytest.raises(Conflict):
        await store.apply([InsertMessage(message(2)), InsertMessage(message(1, cmid="other")), PutOutbox(record(9))])
    (page,) = await store.message_pages([("c1", 1, 100, 10, False)])
    assert [m.seq for m in page] == [1]
    assert await store.outbox_after(0, 0, 10) == []



async def test_an_idempotency_key_is_never_stored_twice(reopen):
    store = await seeded(reopen)
    await store.apply([InsertMessage(message(1, cmid="k"))])
    with pytest.raises(Conflict):
        await store.apply([InsertMessage(message(2, cmid="k"))])
    await store.apply([InsertMessage(message(2, sender="b", cmid="k"))])  # per sender



async def test_pages_are_ascending_and_cut_at_either_end(reopen):
    store = await seeded(reopen)
    await store.apply([InsertMessage(message(s)) for s in range(1, 11)])
    newest, oldest, window = await store.message_pages([
        ("c1", 1, 2**62, 3, True), ("c1", 1, 2**62, 3, False), ("c1", 4, 8, 10, True)])
    assert [m.seq for m in newest] == [8, 9, 10]
    assert [m.seq for m in oldest] == [1, 2, 3]
    assert [m.seq for m in window] == [4, 5, 6, 7]



async def test_the_outbox_replays_past_the_checkpoint_in_order(reopen):
    store = await seeded(reopen)
    ids = await store.apply([PutOutbox(record(n)) for n in range(5)])
    assert await store.relay_checkpoint(0) == 0
    await store.set_relay_checkpoint(0, ids[2])
    assert await store.relay_checkpoint(0) == ids[2]
    rest = await store.outbox_after(0, ids[2], 10)
    assert [i for i, _ in rest] == ids[3:] and [r.frame for _, r in rest] == [b'{"n":3}', b'{"n":4}']



async def test_outbox_shards_have_their_own_rows_and_checkpoints(reopen):
    store = await seeded(reopen)
    ids = await store.apply([PutOutbox(record(n), shard=n % 2) for n in range(6)])
    even, odd = ids[0::2], ids[1::2]
    assert [i for i, _ in await store.outbox_after(0, 0, 10)] == even
    assert [i for i, _ in await store.outbox_after(1, 0, 10)] == odd
    await store.set_relay_checkpoint(1, odd[-1])
    assert await store.relay_checkpoint(0) == 0  # the other shard's relay did not move this one
    assert [i for i, _ in await store.outbox_after(0, 0, 10)] == even
    assert await store.outbox_after(1, odd[-1], 10) == []



async def test_a_checkpoint_never_moves_back(reopen):
    """A relay that lost its shard may record a checkpoint after the new owner did."""
    store = await seeded(reopen)
    ids = await store.apply([PutOutbox(record(n)) for n in range(4)])
    await store.set_relay_checkpoint(0, ids[3])
    await store.set_relay_checkpoint(0, ids[1])
    assert await store.relay_checkpoint(0) == ids[3]
    assert await store.outbox_after(0, ids[1], 10) == []



async def test_membership_and_lists_follow_member_changes(reopen):
    store = await seeded(reopen)
    assert sorted(await store.member_ids("c1")) == ["a", "b"]
    await store.apply([DropMember("c1", "b")])
    assert await store.member_ids("c1") == ["a"]
    found = await store.membership("c1", "b")
    assert found is not None and found[1] is None
    assert await store.membership("nope", "a") is None
    assert [(c.id, m.role, peer) for c, m, peer in await store.conv_list("a")] == [("c1", "owner", None)]



async def test_the_conv_list_names_the_peer_of_a_direct_conversation(reopen):
    store = await reopen()
    direct = ConvRow(id="d1", kind="direct", title=None, visibility="private", password_hash=None,
                     history="full", owner="a", created_at=1)
    await store.apply([CreateConv(direct), PutMember(member("a", conv="d1")), PutMember(member("b", conv="d1"))])
    assert [(c.id, peer) for c, _, peer in await store.conv_list("a")] == [("d1", "b")]
    assert [(c.id, peer) for c, _, peer in await store.conv_list("b")] == [("d1", "a")]
    await store.apply([DropMember("d1", "b")])
    assert [(c.id, peer) for c, _, peer in await store.conv_list("a")] == [("d1", None)]



async def test_what_was_applied_survives_reopening(reopen):
    store = await seeded(reopen)
    await store.apply([InsertMessage(message(1)), SetConvHead("c1", 1)])
    await store.close()
    again = await reopen()
    facts = await again.prefetch(Needs(convs={"c1"}, idem={("c1", "a", "m1")}))
    assert facts.convs["c1"].row.last_seq == 1 and facts.idem == {("c1", "a", "m1"): (1, 10)}



async def test_conversation_settings_and_pins_are_read_back_with_the_conversation(reopen):
    store = await seeded(reopen)
    row = conv_row(last_seq=0)
    row.title, row.visibility, row.password_hash, row.history = "renamed", "public", "argon2-hash", "full"
    row.slow_mode_s, row.read_only, row.permissions, row.pinned = 30, True, {"pin": "member"}, [3, 1]
    await store.apply([SetConvHead("c1", 5), UpdateConv(row)])
    store = await reopen()
    got = (await store.prefetch(Needs(convs={"c1"}))).convs["c1"].row
    assert got == ConvRow(id="c1", kind="group", title="renamed", visibility="public", password_hash="argon2-hash",
                          history="full", owner="a", created_at=1, last_seq=5, slow_mode_s=30, read_only=True,
                          permissions={"pin": "member"}, pinned=[3, 1])  # the head is not the settings' to move
    found = await store.membership("c1", "a")
    assert found is not None and found[0] == got
    assert [(c.slow_mode_s, c.pinned) for c, _, _ in await store.conv_list("a")] == [(30, [3, 1])]



def sanction(user: str, kind: str, until: int = 10**12) -> SanctionRow:
    return SanctionRow(conv="c1", user=user, kind=kind, until=until, by="a", at=5, reason=f"{kind} reason")



async def test_mutes_and_bans_come_with_their_conversation_and_outlive_membership(reopen):
    store = await seeded(reopen)
    await store.apply([PutSanction(sanction("b", "mute")), PutSanction(sanction("x", "ban")),
                       PutSanction(sanction("b", "mute", until=99)), DropMember("c1", "b")])
    store = await reopen()  # durable: a ban survives a restart
    state = (await store.prefetch(Needs(convs={"c1"}))).convs["c1"]
    assert state.mutes == {"b": sanction("b", "mute", until=99)}  # the last one of a kind wins
    assert state.bans == {"x": sanction("x", "ban")}
    await store.apply([DropSanction("c1", "x", "ban"), DropSanction("c1", "b", "ban")])
    state = (await store.prefetch(Needs(convs={"c1"}))).convs["c1"]
    assert state.bans == {} and set(state.mutes) == {"b"}



async def test_blocks_are_read_either_way_and_a_direct_conversation_carries_its_pairs(reopen):
    store = await reopen()
    direct = ConvRow(id="d1", kind="direct", title=None, visibility="private", password_hash=None,
                     history="full", owner="a", created_at=1)
    await store.apply([CreateConv(direct), PutMember(member("a", conv="d1")), PutMember(member("b", conv="d1")),
                       PutBlock("b", "a", 7), PutBlock("b", "a", 8), PutBlock("c", "b", 9)])
    facts = await store.prefetch(Needs(convs={"d1"}, blocks={("a", "b"), ("a", "c"), ("c", "b")}))
    assert facts.convs["d1"].blocks == {("b", "a")}
    assert facts.blocks == {("b", "a"), ("c", "b")}
    assert await store.block_peers("b") == {"a", "c"} and await store.block_peers("a") == {"b"}
    await store.apply([DropBlock("b", "a"), DropBlock("a", "b")])
    assert (await store.prefetch(Needs(convs={"d1"}))).convs["d1"].blocks == set()
    assert await store.block_peers("a") == set()



async def test_a_conversation_is_inspected_with_its_members_and_a_senders_messages_are_paged(reopen):
    store = await seeded(reopen)
    await store.apply([InsertMessage(message(1)), InsertMessage(message(2, sender="b")), InsertMessage(message(3)),
                       SetConvHead("c1", 3)])
    found = await store.conv_members("c1")
    assert found is not None and found[0].last_seq == 3
    assert sorted((m.user, m.role) for m in found[1]) == [("a", "owner"), ("b", "member")]
    assert await store.conv_members("nope") is None
    assert [m.seq for m in await store.sent_messages("a", "c1", 0, 10)] == [1, 3]
    assert [m.seq for m in await store.sent_messages("a", "c1", 1, 10)] == [3]
    assert [m.seq for m in await store.sent_messages("a", "c1", 0, 1)] == [1]
    assert await store.sent_messages("b", "other", 0, 10) == []
    assert msgspec.structs.asdict(found[0])["id"] == "c1"


async def test_a_delivered_cursor_only_moves_forward_and_is_read_with_the_members(reopen):
    store = await seeded(reopen)
    await store.apply([InsertMessage(message(1)), InsertMessage(message(2)), SetConvHead("c1", 2),
                       SetDeliveredSeq("c1", "b", 2)])
    await store.apply([SetDeliveredSeq("c1", "b", 1)])  # a late acknowledgement of an older one
    store = await reopen()
    state = (await store.prefetch(Needs(convs={"c1"}))).convs["c1"]
    assert (state.members["b"].delivered_seq, state.members["a"].delivered_seq) == (2, 0)
    _, members = await store.conv_members("c1")  # type: ignore[misc]
    assert {m.user: m.delivered_seq for m in members} == {"a": 0, "b": 2}


async def test_unread_counts_sum_each_members_conversations(reopen):
    store = await seeded(reopen)  # c1: a (owner) and b
    await store.apply([InsertMessage(message(1)), InsertMessage(message(2)), InsertMessage(message(3)),
                       SetConvHead("c1", 3), SetReadSeq("c1", "a", 3), SetReadSeq("c1", "b", 1),
                       CreateConv(conv_row("c2")), PutMember(member("b", conv="c2")),
                       PutMember(MemberRow(conv="c2", user="c", role="member", visible_from=5, read_seq=0, joined_at=1)),
                       InsertMessage(message(1, conv="c2")), InsertMessage(message(6, conv="c2")),
                       SetConvHead("c2", 6)])
    store = await reopen()
    # b: 2 in c1 and 6 in c2; c joined c2 at seq 5, so only 5 and 6 are theirs; nobody: none.
    assert await store.unread_counts(["a", "b", "c", "nobody", "b"]) == [0, 8, 2, 0, 8]
    assert await store.unread_counts([]) == []
