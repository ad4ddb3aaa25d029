"""CassandraStore's own logic without a server: write planning, batch packing, ids, and the
single-writer guarantee of ADR 0001, on the in-memory model of Cassandra semantics
(tests/cassandra_model.py). What only a real cluster can show (Paxos under contention,
timeouts, TTL expiry, batch limits) is in the contract suite's "cassandra" runs."""

from __future__ import annotations

import asyncio
import random

import msgspec
import pytest

from chat_core.core import ChatCore
from chat_core.relay import OutboxRelay
from chat_core.worker import CommandWorker
from parley import frames as F
from parley.adapters.cassandra_store import (
    BATCH_BYTES, ID_SHIFT, MESSAGE_BUCKET, CassandraStore, IdClock, outbox_tb, pack, plan_writes,
)
from tests.cassandra_model import InvalidRequest, ModelSession
from parley.adapters.inprocess import InProcessLog, LocalBus
from parley.auth import Passwords
from parley.errors import Conflict, Unavailable
from parley.frames import Message
from parley.ports import GatewayMessage, Reply
from parley.records import (
    Command, ConvRow, CreateConv, DropMember, EventRecord, InsertMessage, MemberRow, Needs, PutMember, PutOutbox,
    SetConvHead, SetConvOwner, UpdateMessage,
)

_json = msgspec.json.Decoder()


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


class Consumer:
    """One chat_core consumer on its own CassandraStore; both stores share one model cluster."""

    def __init__(self, session: ModelSession) -> None:
        self.store = CassandraStore(session)
        self.replies: dict[str, dict] = {}
        bus = LocalBus()
        bus.attach("gw", self._on_message)
        self.worker = CommandWorker(ChatCore(), InProcessLog[Command](10_000), self.store, bus,
                                    OutboxRelay(self.store, InProcessLog[EventRecord](10_000)), Passwords())

    def _on_message(self, m: GatewayMessage) -> None:
        assert isinstance(m, Reply)
        self.replies[m.rid] = _json.decode(m.frame)

    async def run(self, *cmds: Command) -> list[dict]:
        await self.worker.process(list(cmds))
        return [self.replies[c.body.rid] for c in cmds]


def send(user: str, n: int) -> Command:
    return Command("c1", user, "gw", "s-" + user, F.Send(rid=f"{user}-{n}", conv="c1", cmid=f"{user}-{n}", text=str(n)))


@pytest.fixture
async def pair():
    session = ModelSession(interleave=True)
    a, b = Consumer(session), Consumer(session)
    await a.store.create_user("bob", "bob", "-", 0)
    create = Command("c1", "alice", "gw", "s-alice", F.ConvCreate(rid="create", kind="group", members=["bob"]))
    assert (await a.run(create))[0]["op"] == "ok"
    return a, b


async def stored(store: CassandraStore) -> list[tuple[int, str]]:
    (page,) = await store.message_pages([("c1", 1, 2**62, 10_000, False)])
    return [(m.seq, m.cmid) for m in page]


async def test_a_stale_consumer_cannot_reuse_a_seq(pair):
    old, new = pair
    assert [r["seq"] for r in await old.run(send("alice", 1))] == [1]
    assert [r["seq"] for r in await new.run(send("alice", 2), send("bob", 3))] == [2, 3]
    (reply,) = await old.run(send("bob", 4))  # decided from a stale head: the claim is refused
    assert (reply["op"], reply["code"]) == ("error", "unavailable")
    assert await stored(old.store) == [(1, "alice-1"), (2, "alice-2"), (3, "bob-3")]
    assert [r["seq"] for r in await old.run(send("bob", 4))] == [4]
    assert [r["seq"] for r in await new.run(send("alice", 2))] == [2]  # a redelivered command: same seq


async def test_racing_consumers_never_assign_a_seq_twice_and_keep_seqs_dense(pair):
    a, b = pair
    rng = random.Random(7)
    acked: dict[str, int] = {}
    refused = 0
    pending = [send(rng.choice(["alice", "bob"]), n) for n in range(200)]

    async def consume(consumer: Consumer, mine: list[Command]) -> None:
        nonlocal refused
        while mine:
            batch = [mine.pop(0) for _ in range(min(len(mine), rng.randint(1, 8)))]
            for cmd, reply in zip(batch, await consumer.run(*batch)):
                if reply["op"] == "ok":
                    acked[cmd.body.rid] = reply["seq"]
                else:
                    assert reply["code"] == "unavailable"
                    refused += 1
                    mine.append(cmd)

    await asyncio.gather(consume(a, pending[::2]), consume(b, pending[1::2]))
    assert refused > 0, "the consumers never collided: the race was not exercised"
    seqs = await stored(a.store)
    assert [seq for seq, _ in seqs] == list(range(1, 201))
    assert {cmid: seq for seq, cmid in seqs} == acked
