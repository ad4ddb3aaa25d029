"""CassandraStore's own logic without a server: write planning, batch packing, ids, claims and
heads, on the in-memory model of Cassandra semantics (tests/cassandra_model.py). The single-writer
race of ADR 0001 runs on it in tests/integration/test_single_writer.py. What only a real cluster
can show (Paxos under contention, timeouts, TTL expiry, batch limits) is in the contract suite's
"cassandra" runs."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from parley.adapters.cassandra.database import _IN_FLIGHT
from parley.adapters.cassandra.partitions import ID_SHIFT, MESSAGE_BUCKET, IdClock, outbox_tb
from parley.adapters.cassandra.store import CassandraStore
from parley.adapters.cassandra.writes import BATCH_BYTES, pack, plan_writes
from parley.errors import Conflict, Unavailable
from parley.frames import Message
from parley.records import (
    ConvRow, CreateConv, DropBlock, DropMember, DropSanction, EventRecord, InsertMessage, MemberRow, Needs, PutBlock,
    PutMember, PutOutbox, PutSanction, SanctionRow, SetConvHead, SetConvOwner, UpdateConv, UpdateMessage,
)
from tests.cassandra_model import RELEASE, InvalidRequest, ModelSession


def row(conv: str = "c1") -> ConvRow:
    return ConvRow(id=conv, kind="group", title="t", visibility="private", password_hash=None, history="full",
                   owner="a", created_at=1)


def member(user: str, conv: str = "c1", read_seq: int = 0) -> MemberRow:
    return MemberRow(conv=conv, user=user, role="member", visible_from=1, read_seq=read_seq, joined_at=1)


def msg(seq: int, conv: str = "c1", cmid: str | None = None) -> Message:
    return Message(conv=conv, seq=seq, sender="a", ts=seq, cmid=cmid or f"m{seq}", text=f"t{seq}")


def plan(*mutations):
    ids = iter(range(1, 10**6))
    return plan_writes(mutations, lambda shard: next(ids), lambda entries: [], 60, 60)


# ---- planning (pure) -------------------------------------------------------------------------


def test_a_leave_then_a_rejoin_in_one_batch_is_one_insert():
    """One batch, one timestamp: a delete and an insert of a row would leave the delete."""
    p = plan(DropMember("c1", "b"), PutMember(member("b", read_seq=5)))
    names = [n for n, _ in p.logged]
    assert "member_drop" not in names and names.count("member_put") == 1
    assert ("cursor_set", [5, 5, "c1", "b"]) in p.logged  # timestamp = read_seq: only forward


def test_an_edit_of_a_message_sent_in_the_same_batch_is_part_of_its_claim():
    p = plan(InsertMessage(msg(1)), UpdateMessage("c1", 1, "edited", 9, False), SetConvHead("c1", 1))
    (claim,) = p.claims[("c1", 0)]
    assert claim[1][6] == "edited" and claim[1][10] == 9
    assert not any(n.startswith("message_") for n, _ in p.logged)
    assert p.heads == [("head_set", [1, 1, "c1"])]


def test_a_conversation_created_and_handed_over_in_one_batch_is_inserted_with_its_new_owner():
    p = plan(CreateConv(row()), SetConvOwner("c1", "b"))
    assert [params[6] for n, params in p.logged if n == "conv_insert"] == ["b"]
    assert "conv_set_owner" not in [n for n, _ in p.logged]


def sanction(user: str, kind: str, until: int) -> SanctionRow:
    return SanctionRow(conv="c1", user=user, kind=kind, until=until, by="a", at=1)


def test_moderation_writes_collapse_to_the_last_one_per_row():
    """A drop then a put of one sanction or block in one batch must stay a put (a deletion wins a
    timestamp tie), and two puts must keep the last (a tie keeps the larger value)."""
    p = plan(DropSanction("c1", "b", "ban"), PutSanction(sanction("b", "ban", 50)),
             PutSanction(sanction("m", "mute", 10**12)), PutSanction(sanction("m", "mute", 99)),
             PutSanction(sanction("x", "mute", 1)), DropSanction("c1", "x", "mute"),
             DropBlock("a", "b"), PutBlock("a", "b", 7), PutBlock("c", "d", 8), DropBlock("c", "d"))
    assert [s for s in p.logged if s[0].startswith("sanction_")] == [
        ("sanction_put", ["c1", "b", "ban", 50, "a", 1, None]),
        ("sanction_put", ["c1", "m", "mute", 99, "a", 1, None]),
        ("sanction_drop", ["c1", "x", "mute"])]
    assert [s for s in p.logged if "block" in s[0]] == [("blocked_by_put", ["b", "a", 7]),
                                                        ("blocked_by_drop", ["d", "c"])]
    assert p.blocks == [("block_put", ["a", "b", 7]), ("block_drop", ["c", "d"])]


def test_settings_of_a_conversation_created_in_the_same_batch_are_part_of_its_insert():
    changed = row()
    changed.title, changed.allow_guests, changed.pinned, changed.last_seq, changed.owner = "new", True, [2], 9, "z"
    p = plan(CreateConv(row()), UpdateConv(changed))
    assert [n for n, _ in p.logged] == ["conv_insert", "settings_put"]
    assert p.logged[0][1][2] == "new" and p.logged[0][1][6] == "a"  # not the owner: UpdateConv leaves it
    assert p.logged[1] == ("settings_put", ["c1", 0, False, True, None, [2]])
    assert p.heads == [("head_set", [0, 0, "c1"])]  # nor the head
    assert [n for n, _ in plan(CreateConv(row())).logged] == ["conv_insert"]  # the defaults: no row


def test_an_update_writes_the_settings_whole_and_never_the_owner_or_head():
    changed = row()
    changed.password_hash, changed.permissions, changed.last_seq = "h", {"pin": "member"}, 9
    p = plan(UpdateConv(row()), UpdateConv(changed))
    assert p.logged == [("conv_update", ["t", "private", "h", "full", "c1"]),
                        ("settings_put", ["c1", 0, False, False, {"pin": "member"}, None]),
                        ("topic_put", ["c1", None])]  # no topic: a null cell, one per conversation
    assert p.heads == []


def test_claims_are_grouped_by_partition_and_split_at_a_bucket_boundary():
    p = plan(*(InsertMessage(msg(s)) for s in (MESSAGE_BUCKET - 1, MESSAGE_BUCKET, MESSAGE_BUCKET + 1)),
             InsertMessage(msg(1, conv="c2")))
    assert {k: [params[2] for _, params in v] for k, v in p.claims.items()} == {
        ("c1", 0): [MESSAGE_BUCKET - 1], ("c1", 1): [MESSAGE_BUCKET, MESSAGE_BUCKET + 1], ("c2", 0): [1]}


def test_a_seq_or_key_used_twice_in_one_batch_is_a_conflict():
    with pytest.raises(Conflict):
        plan(InsertMessage(msg(1)), InsertMessage(msg(1, cmid="other")))
    with pytest.raises(Conflict):
        plan(InsertMessage(msg(1, cmid="k")), InsertMessage(msg(2, cmid="k")))


def test_logged_batches_stay_under_the_size_limit_and_keep_order():
    stmts = [("outbox_put", [0, 1, i, b"x" * 1000, 60]) for i in range(100)]
    chunks = pack(stmts)
    assert len(chunks) > 1 and all(sum(len(p[3]) for _, p in c) < BATCH_BYTES for c in chunks)
    assert [p[2] for c in chunks for _, p in c] == list(range(100))


def test_ids_increase_and_never_fall_below_the_floor():
    clock = IdClock()
    a = clock.next()
    assert clock.next() > a
    ahead = clock.now() + (3_600_000 << ID_SHIFT)  # another writer's clock was an hour ahead
    assert clock.next(floor=ahead) == ahead + 1
    assert clock.next() == ahead + 2
    assert outbox_tb(ahead) > outbox_tb(a)


# ---- the model itself -------------------------------------------------------------------------


async def test_the_model_keeps_clustering_desc_and_refuses_a_conditional_batch_across_partitions():
    s = ModelSession()
    for seq in (1, 3, 2):
        await s.execute("message_claim", ["c1", 0, seq, "a", 0, f"m{seq}", None, None, None, None, None, False])
    assert (await s.execute("message_newest", ["c1", 0])).rows == [(3,)]
    claim = lambda conv: ("message_claim", [conv, 0, 9, "a", 0, "x", None, None, None, None, None, False])  # noqa: E731
    with pytest.raises(InvalidRequest):
        await s.batch([claim("c1"), claim("c2")], conditional=True)
    assert (await s.batch([claim("c1"), ("message_claim", claim("c1")[1][:2] + [1] + claim("c1")[1][3:])],
                          conditional=True))[0][0] is False
    assert (await s.execute("message_newest", ["c1", 0])).rows == [(3,)]  # all or nothing


async def test_a_late_head_write_does_not_move_the_head_back():
    store = CassandraStore(ModelSession())
    await store.apply([CreateConv(row()), SetConvHead("c1", 7)])
    await store.apply([SetConvHead("c1", 5)])  # a stale writer's batch arriving late
    found = await store.membership("c1", "a")
    assert found is not None and found[0].last_seq == 7


async def test_moderation_state_round_trips_and_settings_reset_to_the_defaults():
    store = CassandraStore(ModelSession())
    direct = ConvRow(id="d1", kind="direct", title=None, visibility="private", password_hash=None,
                     history="full", owner="a", created_at=1, allow_guests=True, slow_mode_s=5)
    await store.apply([CreateConv(direct), PutMember(member("a", "d1")), PutMember(member("b", "d1")),
                       PutBlock("a", "b", 1), DropBlock("a", "b"), PutBlock("a", "b", 2)])
    found = await store.membership("d1", "a")
    assert found is not None and (found[0].allow_guests, found[0].slow_mode_s) == (True, 5)
    state = (await store.prefetch(Needs(convs={"d1"}))).convs["d1"]
    assert state.blocks == {("a", "b")} and await store.block_peers("b") == {"a"}
    plain = ConvRow(id="d1", kind="direct", title=None, visibility="private", password_hash=None, history="full",
                    owner="a", created_at=1)
    await store.apply([UpdateConv(plain), DropBlock("a", "b")])
    state = (await store.prefetch(Needs(convs={"d1"}))).convs["d1"]
    assert state.row == plain and state.blocks == set() and await store.block_peers("a") == set()


async def test_a_block_is_in_blocked_by_before_chat_core_can_see_it_in_blocks():
    """chat_core decides from `blocks` (a block it sees is not written again), so `blocks` is
    written only once its mirror is: a failure in between leaves no block chat_core sees, and
    the client's retry writes both."""
    session = ModelSession()
    store = CassandraStore(session)
    session.fail = lambda names: any(n in ("block_put", "block_drop") for n in names)
    with pytest.raises(Unavailable):
        await store.apply([PutBlock("a", "b", 1)])
    assert (await store.prefetch(Needs(blocks={("a", "b")}))).blocks == set()
    session.fail = None
    await store.apply([PutBlock("a", "b", 2)])  # the retry
    assert await store.block_peers("a") == {"b"} and await store.block_peers("b") == {"a"}
    session.fail = lambda names: any(n == "block_drop" for n in names)
    with pytest.raises(Unavailable):
        await store.apply([DropBlock("a", "b")])
    assert (await store.prefetch(Needs(blocks={("b", "a")}))).blocks == {("a", "b")}  # still blocked: retried
    session.fail = None
    await store.apply([DropBlock("a", "b")])
    assert await store.block_peers("a") == set() and await store.block_peers("b") == set()


# ---- ADR 0001 on the model: claims, orphans, compensation ---------------------------------------


async def test_messages_claimed_by_a_writer_that_died_before_its_logged_batch_are_found_on_load():
    session = ModelSession()
    store = CassandraStore(session)
    await store.apply([CreateConv(row()), PutMember(member("a"))])
    session.fail = lambda names: any(n == "idem_put" for n in names)  # the logged batch fails
    with pytest.raises(Unavailable):
        await store.apply([InsertMessage(msg(1, cmid="k")), SetConvHead("c1", 1), PutOutbox(EventRecord("c1", b"x"))])
    session.fail = None
    facts = await CassandraStore(session).prefetch(Needs(convs={"c1"}, idem={("c1", "a", "k")}))
    assert facts.convs["c1"].row.last_seq == 1  # derived from the newest message
    assert facts.idem[("c1", "a", "k")] == (1, 1)  # a retry finds its message


async def test_a_claim_refused_in_one_conversation_takes_back_the_claims_of_the_others():
    store = CassandraStore(ModelSession())
    await store.apply([InsertMessage(msg(1, conv="c2"))])
    with pytest.raises(Conflict):
        await store.apply([InsertMessage(msg(1, conv="c1")), InsertMessage(msg(1, conv="c2", cmid="again"))])
    (c1,) = await store.message_pages([("c1", 1, 100, 10, False)])
    assert c1 == []


async def test_pages_cross_bucket_boundaries_both_ways():
    store = CassandraStore(ModelSession())
    seqs = range(MESSAGE_BUCKET - 3, MESSAGE_BUCKET + 3)
    await store.apply([InsertMessage(msg(s)) for s in seqs])
    newest, oldest = await store.message_pages([("c1", 1, 2**62, 4, True), ("c1", MESSAGE_BUCKET - 3, 2**62, 4, False)])
    assert [m.seq for m in newest] == list(seqs)[-4:]
    assert [m.seq for m in oldest] == list(seqs)[:4]


# ---- readiness -------------------------------------------------------------------------------


async def test_the_readiness_probe_asks_a_node_about_itself_and_reports_an_unreachable_cluster():
    session = ModelSession()
    store = CassandraStore(session)
    await store.ping()
    assert session.calls == ["store_ping"]
    assert (await session.execute("store_ping", [])).rows == [(RELEASE,)]  # the row the probe reads
    session.fail = lambda names: names == ["store_ping"]
    with pytest.raises(Unavailable):
        await store.ping()


async def test_the_readiness_probe_does_not_queue_behind_the_stores_own_requests():
    """A busy process is not an unreachable cluster: the probe skips the in-flight limit."""
    session = ModelSession()
    store = CassandraStore(session)
    async with contextlib.AsyncExitStack() as held:
        for _ in range(_IN_FLIGHT):
            await held.enter_async_context(store._limit)
        assert store._limit.locked()
        async with asyncio.timeout(1):
            await store.ping()
