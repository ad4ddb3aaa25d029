"""The Kafka log adapter against a real Kafka-protocol broker (tansu) over loopback."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from parley.adapters.kafka_log import KafkaLogConsumer, KafkaLogProducer, ensure_topics
from parley.errors import Unavailable
from parley.ports import PartitionsHook
from parley.frames import Send
from parley.records import Command, EventRecord
from tests.kafka_broker import KafkaBroker, create_topic, kafka_broker  # noqa: F401

pytestmark = pytest.mark.integration

T = TypeVar("T")
PARTITIONS = 4
#: Rebalances in ~0.3-3 s on tansu instead of 8-25 s with the defaults.
FAST_GROUP: dict[str, Any] = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 300, "rebalance_timeout_ms": 3000}

OpenProducer = Callable[..., Awaitable[KafkaLogProducer[Any]]]
OpenConsumer = Callable[..., Awaitable[KafkaLogConsumer[Any]]]

_names = itertools.count()


def unique(prefix: str) -> str:
    """Tests share the broker: every topic and group is the test's own."""
    return f"{prefix}-{time.monotonic_ns()}-{next(_names)}"


def command(conv: str, n: int) -> Command:
    return Command(conv=conv, user="u1", gateway="gw1", session="s1",
                   body=Send(rid=f"r{n}", conv=conv, cmid=f"{conv}-{n}", text=f"message {n}"))


@pytest.fixture
async def topic(kafka_broker: KafkaBroker) -> str:  # noqa: F811
    name = unique("topic")
    await create_topic(kafka_broker, name, PARTITIONS)
    return name


@pytest.fixture
async def open_producer(kafka_broker: KafkaBroker) -> AsyncIterator[OpenProducer]:  # noqa: F811
    started: list[KafkaLogProducer[Any]] = []

    async def make(topic: str, **kw: Any) -> KafkaLogProducer[Any]:
        producer: KafkaLogProducer[Any] = KafkaLogProducer(
            kafka_broker.address, topic, client_id="test", enable_idempotence=False, **kw)
        await producer.start()
        started.append(producer)
        return producer

    yield make
    for producer in started:
        await producer.stop()


@pytest.fixture
async def open_consumer(kafka_broker: KafkaBroker) -> AsyncIterator[OpenConsumer]:  # noqa: F811
    started: list[KafkaLogConsumer[Any]] = []

    async def make(topic: str, group: str, item_type: type[Any] = Command,
                   hooks: tuple[PartitionsHook, PartitionsHook] | None = None, **kw: Any) -> KafkaLogConsumer[Any]:
        consumer: KafkaLogConsumer[Any] = KafkaLogConsumer(
            kafka_broker.address, topic, group, item_type, client_id="test", **FAST_GROUP, **kw)
        if hooks is not None:
            consumer.watch(*hooks)
        await consumer.start()
        started.append(consumer)
        return consumer

    yield make
    for consumer in started:
        await consumer.stop()  # a second stop is a no-op


async def read_until(consumer: KafkaLogConsumer[T], done: Callable[[list[T]], bool],
                     max_n: int = 100, timeout: float = 15.0) -> list[T]:
    """Batches until `done(items)`, committing each one as a worker does."""
    items: list[T] = []
    async with asyncio.timeout(timeout):
        while not done(items):
            items += await consumer.next_batch(max_n)
            await consumer.commit()
    return items


async def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)


async def group_offsets(broker: KafkaBroker, topic: str, group: str) -> dict[int, int | None]:
    """Where each partition resumes for the next member of `group`: its committed offsets."""
    probe = AIOKafkaConsumer(bootstrap_servers=broker.address, group_id=group, enable_auto_commit=False)
    await probe.start()  # not subscribed: it reads the group's offsets without joining it
    try:
        return {p: await probe.committed(TopicPartition(topic, p)) for p in range(PARTITIONS)}
    finally:
        await probe.stop()


def by_conv(items: list[Command]) -> dict[str, list[str]]:
    """The cmids of each conversation, in the order they were consumed."""
    out: dict[str, list[str]] = {}
    for item in items:
        assert isinstance(item.body, Send)
        out.setdefault(item.conv, []).append(item.body.cmid)
    return out


async def publish_conversations(producer: KafkaLogProducer[Command], convs: list[str], per_conv: int) -> None:
    """Each conversation's items one after another, all conversations at once."""
    async def one_conv(conv: str) -> None:
        for n in range(per_conv):
            await producer.publish(command(conv, n))
    await asyncio.gather(*(one_conv(conv) for conv in convs))


async def test_items_of_a_conversation_come_out_in_publish_order(
        kafka_broker: KafkaBroker, topic: str,  # noqa: F811
        open_producer: OpenProducer, open_consumer: OpenConsumer) -> None:
    convs = [f"c{i}" for i in range(12)]
    producer = await open_producer(topic)
    await publish_conversations(producer, convs, per_conv=30)

    # The conversations really are spread over partitions, or order would be trivially kept.
    probe = AIOKafkaConsumer(bootstrap_servers=kafka_broker.address)
    await probe.start()
    try:
        ends = await probe.end_offsets([TopicPartition(topic, p) for p in range(PARTITIONS)])
    finally:
        await probe.stop()
    assert sum(1 for end in ends.values() if end > 0) >= 2

    consumer = await open_consumer(topic, unique("group"))
    items = await read_until(consumer, lambda got: len(got) >= 12 * 30, max_n=50)
    assert len(items) == 12 * 30
    assert by_conv(items) == {conv: [f"{conv}-{n}" for n in range(30)] for conv in convs}
    assert items[0] == command(items[0].conv, 0)  # decoded to equal Structs, body union included


async def test_publish_many_keeps_each_conversations_order_in_one_burst(
        topic: str, open_producer: OpenProducer, open_consumer: OpenConsumer) -> None:
    convs = [f"c{i}" for i in range(12)]
    producer = await open_producer(topic)
    # Interleaved as the relay's pending events are: every conversation's n-th, then (n+1)-th.
    await producer.publish_many([command(conv, n) for n in range(30) for conv in convs])
    consumer = await open_consumer(topic, unique("group"))
    items = await read_until(consumer, lambda got: len(got) >= 12 * 30, max_n=50)
    assert len(items) == 12 * 30
    assert by_conv(items) == {conv: [f"{conv}-{n}" for n in range(30)] for conv in convs}


async def test_event_records_round_trip(
        topic: str, open_producer: OpenProducer, open_consumer: OpenConsumer) -> None:
    records = [
        EventRecord(conv="c1", frame=b'{"type":"message"}'),
        EventRecord(conv="c1", frame=b"\x00\xff", to=["u1", "u2"], also=["u3"], members_changed=True),
        EventRecord(conv="c2", frame=b"{}", to=[]),
    ]
    producer = await open_producer(topic)
    for record in records:
        await producer.publish(record)
    consumer = await open_consumer(topic, unique("group"), EventRecord)
    items = await read_until(consumer, lambda got: len(got) >= 3)
    assert sorted(items, key=lambda r: (r.conv, r.frame)) == sorted(records, key=lambda r: (r.conv, r.frame))


async def test_concurrent_publishes_are_batched_thousands_per_second(
        topic: str, open_producer: OpenProducer, open_consumer: OpenConsumer) -> None:
    producer = await open_producer(topic)
    n = 5000
    started = time.perf_counter()
    await asyncio.gather(*(producer.publish(command(f"c{i % 50}", i)) for i in range(n)))
    rate = n / (time.perf_counter() - started)
    print(f"{rate:.0f} acknowledged publishes/s")
    assert rate > 1000  # one at a time it is ~1.3k/s; batched, tens of thousands

    consumer = await open_consumer(topic, unique("group"))
    items = await read_until(consumer, lambda got: len(got) >= n, max_n=1000)
    assert sorted(int(c.body.rid[1:]) for c in items) == list(range(n))


async def test_durable_offsets_are_committed_at_the_interval_when_idle_and_at_stop(
        kafka_broker: KafkaBroker, topic: str,  # noqa: F811
        open_producer: OpenProducer, open_consumer: OpenConsumer) -> None:
    producer = await open_producer(topic)
    for n in range(12):
        await producer.publish(command("c1", n))  # one conversation: one partition
    group = unique("group")

    async def resume_at() -> int | None:
        return max((o for o in (await group_offsets(kafka_broker, topic, group)).values() if o), default=None)

    consumer = await open_consumer(topic, group, commit_interval_ms=60_000)
    a = await consumer.next_batch(3)
    await consumer.commit()  # the first commit goes at once
    assert await resume_at() == len(a)
    b = await consumer.next_batch(3)
    await consumer.commit()  # durable, but within the interval: not committed yet
    assert await resume_at() == len(a)
    c = await consumer.next_batch(3)  # returned, never made durable
    assert a and b and c
    await consumer.stop()  # commits what is durable, not what was only returned
    assert await resume_at() == len(a) + len(b)

    again = await open_consumer(topic, group, commit_interval_ms=60_000)
    rest = await read_until(again, lambda got: len(got) >= 12 - len(a) - len(b))
    assert rest[:len(c)] == c  # delivered again
    idle = asyncio.create_task(again.next_batch(10))  # nothing left: it polls, and commits meanwhile
    try:
        await wait_for_async(resume_at, 12)
    finally:
        idle.cancel()
        await asyncio.gather(idle, return_exceptions=True)


async def test_durable_offsets_are_committed_before_a_rebalance_moves_the_partitions(
        kafka_broker: KafkaBroker, topic: str,  # noqa: F811
        open_producer: OpenProducer, open_consumer: OpenConsumer) -> None:
    producer = await open_producer(topic)
    for n in range(12):
        await producer.publish(command("c1", n))
    group = unique("group")

    async def resume_at() -> int | None:
        return max((o for o in (await group_offsets(kafka_broker, topic, group)).values() if o), default=None)

    a = await open_consumer(topic, group, commit_interval_ms=60_000)
    first = await a.next_batch(3)
    await a.commit()
    second = await a.next_batch(3)
    await a.commit()  # durable, its commit deferred by the interval
    assert await resume_at() == len(first)
    await open_consumer(topic, group, commit_interval_ms=60_000)  # joins: a's partitions are revoked
    await wait_for_async(resume_at, len(first) + len(second))


async def test_an_existing_topic_with_another_min_insync_floor_is_named_in_a_warning(
        kafka_broker: KafkaBroker, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    name = unique("topic")
    await ensure_topics(kafka_broker.address, [name], PARTITIONS, replication_factor=1, min_insync_replicas=1)
    with caplog.at_level(logging.WARNING, logger="parley.adapters.kafka_log"):
        await ensure_topics(kafka_broker.address, [name], PARTITIONS, replication_factor=1, min_insync_replicas=1)
        assert not caplog.records  # as configured: nothing to say
        await ensure_topics(kafka_broker.address, [name], PARTITIONS, replication_factor=1, min_insync_replicas=2)
    (warning,) = caplog.records
    assert name in warning.getMessage() and "min.insync.replicas 1" in warning.getMessage()


async def wait_for_async(read: Callable[[], Awaitable[T]], expected: T, timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while await read() != expected:
            await asyncio.sleep(0.2)


@pytest.mark.slow  # ~14 s: tansu numbers a first generation 0, aiokafka leaves a group only above 0
async def test_a_returned_batch_is_delivered_again_until_committed(
        topic: str, open_producer: OpenProducer, open_consumer: OpenConsumer) -> None:
    producer = await open_producer(topic)
    for n in range(10):
        await producer.publish(command("c1", n))
    group = unique("group")

    first = await open_consumer(topic, group)
    committed = await first.next_batch(4)
    await first.commit()
    returned = await first.next_batch(4)  # processed, say, but the process dies before commit
    await first.stop()
    assert committed and returned

    second = await open_consumer(topic, group)
    rest = await read_until(second, lambda got: len(got) >= 10 - len(committed))
    assert [c.body.cmid for c in rest] == [f"c1-{n}" for n in range(len(committed), 10)]
    assert rest[:len(returned)] == returned


@pytest.mark.slow  # ~14 s: tansu numbers a first generation 0, aiokafka leaves a group only above 0
async def test_an_undecodable_record_is_logged_skipped_and_committed_past(
        kafka_broker: KafkaBroker, topic: str,  # noqa: F811
        open_producer: OpenProducer, open_consumer: OpenConsumer, caplog: pytest.LogCaptureFixture) -> None:
    producer = await open_producer(topic)
    raw = AIOKafkaProducer(bootstrap_servers=kafka_broker.address, acks="all")
    await raw.start()
    try:
        await producer.publish(command("c1", 0))
        await raw.send_and_wait(topic, b"\xc1 not msgpack", key=b"c1")  # same key: same partition
        await raw.send_and_wait(topic, None, key=b"c1")  # a tombstone: no value at all
    finally:
        await raw.stop()
    group = unique("group")

    first = await open_consumer(topic, group)
    with caplog.at_level(logging.WARNING, logger="parley.adapters.kafka_log"):
        assert [c.body.cmid for c in await first.next_batch(100)] == ["c1-0"]
        assert len([r for r in caplog.records if "undecodable" in r.getMessage()]) == 2
        await first.commit()
        await first.stop()
        caplog.clear()

        await producer.publish(command("c1", 1))
        second = await open_consumer(topic, group)
        assert [c.body.cmid for c in await second.next_batch(100)] == ["c1-1"]
        assert not [r for r in caplog.records if "undecodable" in r.getMessage()]  # not read again


@pytest.mark.slow  # ~10 s: three joins of the group
async def test_partitions_move_between_consumers_and_nothing_is_lost(
        kafka_broker: KafkaBroker, topic: str,  # noqa: F811
        open_producer: OpenProducer, open_consumer: OpenConsumer) -> None:
    convs = [f"c{i}" for i in range(16)]
    producer = await open_producer(topic)
    await publish_conversations(producer, convs, per_conv=20)
    published = {f"{conv}-{n}" for conv in convs for n in range(20)}
    group = unique("group")
    events: dict[str, list[tuple[str, set[int]]]] = {"a": [], "b": []}

    def hooks(name: str) -> tuple[PartitionsHook, PartitionsHook]:
        return (lambda parts: events[name].append(("assigned", parts)),
                lambda parts: events[name].append(("revoked", parts)))

    everything = set(range(PARTITIONS))
    a = await open_consumer(topic, group, hooks=hooks("a"))
    await wait_for(lambda: a.assignment() == everything)
    stale = await a.next_batch(len(published))  # still in flight when the group rebalances
    assert stale

    b = await open_consumer(topic, group, hooks=hooks("b"))
    await wait_for(lambda: bool(b.assignment()) and a.assignment() | b.assignment() == everything)
    a_share, b_share = a.assignment(), b.assignment()
    assert not a_share & b_share
    assert events["a"][-2:] == [("revoked", everything), ("assigned", a_share)]
    assert events["b"] == [("revoked", set()), ("assigned", b_share)]
    b_committed = await b.next_batch(10)
    await b.commit()
    b_uncommitted = await b.next_batch(10)
    await b.stop()  # leaves the group with a batch returned but not committed

    await wait_for(lambda: a.assignment() == everything)
    assert events["a"][-2:] == [("revoked", a_share), ("assigned", everything)]
    # a lost every partition since it returned `stale`: committing that now would skip or undo
    # b's progress, so the commit leaves the group's offsets alone and `stale` comes again.
    before = await group_offsets(kafka_broker, topic, group)
    await a.commit()
    assert await group_offsets(kafka_broker, topic, group) == before

    b_done = {c.body.cmid for c in b_committed}
    a_items = await read_until(a, lambda got: {c.body.cmid for c in got} >= published - b_done)
    a_done = {c.body.cmid for c in a_items}
    assert not a_done & b_done  # what b committed is not delivered again
    assert {c.body.cmid for c in b_uncommitted} <= a_done  # at least once: delivered again
    assert a_done | b_done == published
    for conv, cmids in by_conv(a_items).items():  # the owner of a partition reads it in order
        assert cmids == sorted(cmids, key=lambda cmid: int(cmid.rsplit("-", 1)[1])), conv


async def test_a_frozen_broker_makes_publish_unavailable_within_bounds(
        kafka_broker: KafkaBroker, topic: str, open_producer: OpenProducer) -> None:  # noqa: F811
    producer = await open_producer(topic, timeout_ms=3000)
    await producer.publish(command("c1", 0))
    with kafka_broker.frozen():  # SIGCONT in any case when the block ends
        started = time.monotonic()
        with pytest.raises(Unavailable) as raised:
            await producer.publish(command("c1", 1))
        elapsed = time.monotonic() - started
        started = time.monotonic()
        with pytest.raises(Unavailable):
            await producer.publish_many([command("c1", n) for n in range(2, 50)])
        assert time.monotonic() - started < 10
    assert elapsed < 10, elapsed
    assert raised.value.retry_after_ms
    await producer.publish(command("c1", 50))


async def test_ensure_topics_creates_missing_topics_with_their_durability_and_refuses_another_partition_count(
        kafka_broker: KafkaBroker, open_producer: OpenProducer) -> None:  # noqa: F811
    """`build_role`'s setup on one broker (tansu): replication factor 1, `min.insync.replicas` 1.
    A second run finds the topics as they are; a changed partition count stops the role."""
    a, b = unique("ensure"), unique("ensure")
    await ensure_topics(kafka_broker.address, [a, b], PARTITIONS, replication_factor=1, min_insync_replicas=1)
    await ensure_topics(kafka_broker.address, [a, b], PARTITIONS, replication_factor=1, min_insync_replicas=1)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_broker.address)
    await admin.start()
    try:
        (described,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, a)])
    finally:
        await admin.close()
    (resource,) = described.resources
    assert [(e[0], e[1]) for e in resource[4] if e[0] == "min.insync.replicas"] == [("min.insync.replicas", "1")]
    producer = await open_producer(a)
    await producer.publish(command("c1", 0))  # acks=all is met by the one in-sync replica
    with pytest.raises(RuntimeError, match=f"has {PARTITIONS} partitions"):
        await ensure_topics(kafka_broker.address, [b], PARTITIONS + 1, replication_factor=1)
