"""No (conv, seq) is ever assigned twice, even when two chat_core consumers write one conversation:
a rebalance hands a partition over while the old owner still holds stale state.

Each consumer is the real CommandWorker with its own store connection on one SQLite file (as two
processes sharing the store would be), and again on the Cassandra store over the in-memory model
of Cassandra. The guarantee comes from the store: SQLite checks the primary key (conv, seq) inside
the batch's transaction; Cassandra claims the seqs with a conditional batch first (ADR 0001). A
stale writer's batch is rejected whole, its clients are told to retry, and its cache is dropped.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import msgspec
import pytest

from chat_core.core import ChatCore
from chat_core.relay import OutboxRelay
from chat_core.worker import CommandWorker
from parley import frames as F
from parley.adapters.inprocess import InProcessLog, LocalBus
from parley.adapters.cassandra.store import CassandraStore
from parley.adapters.sqlite.store import SqliteStore
from parley.ports import GatewayMessage, Reply, Store
from parley.records import Command, EventRecord
from tests.cassandra_model import ModelSession

pytestmark = pytest.mark.integration
_json = msgspec.json.Decoder()


class Consumer:
    """One chat_core consumer: its own cache, store connection and relay; replies collected."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.replies: dict[str, dict] = {}
        bus = LocalBus()
        bus.attach("gw", self._on_message)
        self.relay = OutboxRelay(self.store, InProcessLog[EventRecord](10_000))
        self.worker = CommandWorker(ChatCore(), InProcessLog[Command](10_000), self.store, bus, self.relay)

    def _on_message(self, msg: GatewayMessage) -> None:
        assert isinstance(msg, Reply)
        self.replies[msg.rid] = _json.decode(msg.frame)

    async def run(self, *cmds: Command) -> list[dict]:
        await self.worker.process(list(cmds))
        return [self.replies[c.body.rid] for c in cmds]


def send(user: str, n: int, conv: str = "c1") -> Command:
    return Command(conv, user, "gw", "s-" + user, F.Send(rid=f"{user}-{n}", conv=conv, cmid=f"{user}-{n}", text=str(n)))


async def stored_seqs(store: Store, conv: str = "c1") -> list[tuple[int, str]]:
    (page,) = await store.message_pages([(conv, 1, 2**62, 10_000, False)])
    return [(m.seq, m.cmid) for m in page]


@pytest.fixture(params=["sqlite", "cassandra-model"])
async def pair(request: pytest.FixtureRequest, tmp_path: Path):
    """Two consumers on one store: a SQLite file, or the in-memory Cassandra model with the two
    sessions' requests interleaved (tests/cassandra_model.py)."""
    if request.param == "sqlite":
        stores: list[Store] = [SqliteStore(tmp_path / "parley.db", synchronous="NORMAL") for _ in range(2)]
        for store in stores:
            await store.open()  # type: ignore[attr-defined]
    else:
        session = ModelSession(interleave=True)
        stores = [CassandraStore(session), CassandraStore(session)]
    a, b = Consumer(stores[0]), Consumer(stores[1])
    create = Command("c1", "alice", "gw", "s-alice", F.ConvCreate(rid="create", kind="group", members=["bob"]))
    await a.store.create_user("bob", "bob", "-", 0)
    assert (await a.run(create))[0]["op"] == "ok"
    yield a, b
    await a.store.close()
    await b.store.close()


async def test_a_stale_consumer_cannot_reuse_a_seq(pair):
    old, new = pair
    assert [r["seq"] for r in await old.run(send("alice", 1))] == [1]  # old owner's cache: head 1
    # Rebalance: the partition moves to `new`, which loads the head from the store and goes on.
    assert [r["seq"] for r in await new.run(send("alice", 2), send("bob", 3))] == [2, 3]
    # `old` has not noticed yet and decides seq 2 again from its stale cache: the store refuses.
    (reply,) = await old.run(send("bob", 4))
    assert (reply["op"], reply["code"]) == ("error", "unavailable")
    assert await stored_seqs(old.store) == [(1, "alice-1"), (2, "alice-2"), (3, "bob-3")]
    # Its cache was dropped, so a retry (wherever it lands) continues the dense sequence.
    assert [r["seq"] for r in await old.run(send("bob", 4))] == [4]
    assert [r["seq"] for r in await new.run(send("alice", 2))] == [2]  # a redelivered command: same seq


async def test_racing_consumers_never_assign_a_seq_twice_and_keep_seqs_dense(pair):
    a, b = pair
    rng = random.Random(7)
    acked: dict[str, int] = {}
    refused = 0
    pending = [send(rng.choice(["alice", "bob"]), n) for n in range(400)]

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
                    mine.append(cmd)  # the client retries with the same cmid
            await asyncio.sleep(0)

    # Both believe they own the conversation and interleave their batches.
    await asyncio.gather(consume(a, pending[::2]), consume(b, pending[1::2]))
    assert refused > 0, "the consumers never collided: the race was not exercised"
    stored = await stored_seqs(a.store)
    assert [seq for seq, _ in stored] == list(range(1, 401))
    assert len({cmid for _, cmid in stored}) == 400
    assert {cmid: seq for seq, cmid in stored} == acked  # every ok names the stored seq
