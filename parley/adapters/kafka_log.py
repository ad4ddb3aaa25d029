"""The scale-out command/event log: `LogProducer` and `LogConsumer` on Kafka topics (aiokafka).

Records are msgpack-encoded and keyed by conversation id, so one conversation lives on one
partition and keeps its order. Delivery is at least once: a consumer commits only what its
caller has made durable, and what was returned but not committed is delivered again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, Protocol, TypeVar

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError, TopicAlreadyExistsError

from parley import metrics
from parley.errors import Unavailable
from parley.ports import PartitionsHook

log = logging.getLogger(__name__)

#: What a caller is told to wait before retrying when the broker does not answer.
RETRY_AFTER_MS = 1000
#: How long one `getmany` waits for records before `next_batch` polls again; each poll also
#: surfaces errors of the background group coordinator.
POLL_MS = 1000


class Keyed(Protocol):
    """An item of a conversation-keyed log (`Command`, `EventRecord`)."""

    @property
    def conv(self) -> str: ...

    @property
    def trace(self) -> str | None: ...


K = TypeVar("K", bound=Keyed)
T = TypeVar("T")


def trace_headers(traceparent: str | None) -> list[tuple[str, bytes]] | None:
    """The record's trace context as the W3C header Kafka tools read (Parley's consumers read
    the same value from the record itself, where the outbox keeps it too)."""
    return [("traceparent", traceparent.encode())] if traceparent is not None else None


def conv_key(item: Keyed) -> str:
    return item.conv


class KafkaLogProducer(Generic[K]):
    """Publishes items to one topic, keyed by `item.conv` (or by what `key_of` says: push
    requests are keyed by user); a publish returns once the broker
    has acknowledged it (acks=all) or raises Unavailable within `timeout_ms`.

    Create it inside the running event loop (as aiokafka's clients), then `start()`."""

    def __init__(self, bootstrap_servers: str, topic: str, *, client_id: str, enable_idempotence: bool,
                 timeout_ms: int = 5000, max_batch_size: int = 256 * 1024,
                 key_of: Callable[[K], str] = conv_key) -> None:
        self._topic = topic
        self._key_of = key_of
        self._timeout_s = timeout_ms / 1000
        self._healthy = True
        self._encode = msgspec.msgpack.Encoder().encode
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            client_id=client_id,
            acks="all",
            # Off against tansu (tests), which rejects aiokafka's InitProducerId v0. Without it a
            # retried batch can be duplicated: replays are harmless by idempotency key and seq.
            enable_idempotence=enable_idempotence,
            # A batch the broker has not acknowledged expires on the same bound as the publish,
            # instead of aiokafka's 40 s, so a frozen broker does not pile up stale batches.
            request_timeout_ms=timeout_ms,
            # Concurrent publishes share one in-flight batch per partition: the batch size, not
            # linger, bounds throughput (small records on tansu: ~5k/s at aiokafka's 16 KiB
            # default, 20-40k/s at 256 KiB).
            max_batch_size=max_batch_size,
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    @property
    def healthy(self) -> bool:
        """False from a failed publish until the next one succeeds (readiness)."""
        return self._healthy

    async def publish(self, item: K) -> None:
        await self.publish_many((item,))

    async def publish_many(self, items: Sequence[K]) -> None:
        try:
            async with asyncio.timeout(self._timeout_s):
                # `send` only queues the record into a batch (in order, per partition); awaiting
                # its future waits for the ack. Queue all, then wait: the records share batches
                # and round trips instead of taking one each.
                send, topic, encode = self._producer.send, self._topic, self._encode
                key_of = self._key_of
                acks = [await send(topic, encode(item), key=key_of(item).encode(), headers=trace_headers(item.trace))
                        for item in items]
                for failed in await asyncio.gather(*acks, return_exceptions=True):
                    if isinstance(failed, BaseException):
                        raise failed
            self._healthy = True
        except (KafkaError, TimeoutError) as err:
            self._healthy = False
            # The record may still reach the log after this: the caller's retry is a duplicate
            # that the idempotency key makes harmless.
            raise Unavailable("the log is unavailable; retry", retry_after_ms=RETRY_AFTER_MS) from err


class KafkaLogConsumer(Generic[T]):
    """Consumes one topic as a member of a consumer group; `commit` marks what `next_batch`
    returned as durable, and durable offsets of the partitions held all along since are committed
    at most every `commit_interval_ms` (0: at every `commit`), when the consumer idles, and when it
    stops. Each commit is a broker round trip on the consumer's path: under load a batch takes a
    few ms, and committing every one cost a round trip per batch for nothing but a shorter replay
    after a crash, which idempotency keys and sequence numbers make harmless anyway.

    `watch` hooks get partition numbers around a rebalance. aiokafka's protocol
    is eager: `on_revoked` gets the whole previous assignment and `on_assigned` the whole new
    one, so state dropped on revoke is reloaded for partitions that came back.

    Create it inside the running event loop (as aiokafka's clients), then `start()`."""

    def __init__(self, bootstrap_servers: str, topic: str, group_id: str, item_type: type[T], *,
                 client_id: str,
                 session_timeout_ms: int = 10_000, heartbeat_interval_ms: int = 3_000,
                 rebalance_timeout_ms: int = 10_000, commit_timeout_ms: int = 5_000,
                 fetch_max_wait_ms: int = 500, commit_interval_ms: int = 0) -> None:
        self._decode = msgspec.msgpack.Decoder(item_type).decode
        self._topic = topic
        self._on_assigned: PartitionsHook | None = None
        self._on_revoked: PartitionsHook | None = None
        #: A rebalance happened since next_batch last returned: return early so the caller settles.
        self._rebalanced = False
        self._healthy = True
        self._commit_timeout_s = commit_timeout_ms / 1000
        self._commit_interval_s = commit_interval_ms / 1000
        self._committed_at = 0.0
        #: Next offset per partition of what next_batch returned and the caller has not called durable.
        self._returned: dict[TopicPartition, int] = {}
        #: Next offset per partition of what the caller called durable and is not committed yet.
        self._durable: dict[TopicPartition, int] = {}
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers,
            client_id=client_id,
            group_id=group_id,
            enable_auto_commit=False,  # the caller commits once a batch's effects are durable
            auto_offset_reset="earliest",  # a new group starts at the beginning, losing nothing
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=heartbeat_interval_ms,
            rebalance_timeout_ms=rebalance_timeout_ms,
            fetch_max_wait_ms=fetch_max_wait_ms,
        )
        self._consumer.subscribe([topic], listener=_Rebalance(self._revoked, self._assigned))

    async def start(self) -> None:
        await self._consumer.start()

    async def stop(self) -> None:
        """Commit what is durable, then leave the group: the next owner gets what was returned
        and not made durable."""
        if self._durable:
            try:
                await self._commit_durable()
            except Unavailable:
                log.warning("durable offsets not committed at stop: the next owner replays them")
        await self._consumer.stop()

    def watch(self, on_assigned: PartitionsHook, on_revoked: PartitionsHook) -> None:
        self._on_assigned, self._on_revoked = on_assigned, on_revoked

    @property
    def healthy(self) -> bool:
        """False from a failed poll until the next one succeeds (readiness)."""
        return self._healthy

    def assignment(self) -> set[int]:
        return {tp.partition for tp in self._consumer.assignment()}

    async def next_batch(self, max_n: int) -> list[T]:
        """Up to `max_n` items in log order per partition; waits until there is at least one."""
        while True:
            try:
                fetched = await self._consumer.getmany(timeout_ms=POLL_MS, max_records=max_n)
                self._healthy = True
            except KafkaError as err:
                self._healthy = False
                raise Unavailable("the log is unavailable; retry", retry_after_ms=RETRY_AFTER_MS) from err
            items: list[T] = []
            self._observe_lag(fetched)
            for tp, records in fetched.items():
                for record in records:
                    try:
                        items.append(self._decode(record.value))
                    except (msgspec.DecodeError, TypeError):  # TypeError: a record without a value
                        # Nothing can ever decode it: skip it, and commit past it with the batch.
                        log.warning("skipped an undecodable record at %s offset %d", tp, record.offset)
                if records:
                    self._returned[tp] = records[-1].offset + 1
            if items or self._rebalanced:
                self._rebalanced = False
                return items
            if self._durable:  # idle: nothing would commit them until the next batch
                await self._commit_durable()

    def _observe_lag(self, fetched: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        """Per partition: what the broker holds past what this consumer has taken (the high
        watermark of the fetch). A poll that found nothing anywhere means every partition is
        caught up; otherwise a partition without records keeps its last value."""
        consumer = self._consumer
        for tp in consumer.assignment() if not fetched else fetched:
            records = fetched.get(tp)
            highwater = consumer.highwater(tp)
            lag = highwater - (records[-1].offset + 1) if records and highwater is not None else 0
            metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(0, lag))

    async def commit(self) -> None:
        self._durable.update(self._returned)
        self._returned.clear()
        if self._durable and time.monotonic() - self._committed_at >= self._commit_interval_s:
            await self._commit_durable()

    async def _commit_durable(self) -> None:
        offsets = dict(self._durable)
        try:
            # aiokafka retries a commit for as long as the coordinator is unreachable: bound it.
            async with asyncio.timeout(self._commit_timeout_s):
                await self._consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as err:
            # The group rebalanced since: these partitions may be another member's now, and
            # their owner delivers the batch again from the last commit.
            log.warning("offsets %s not committed, partitions reassigned: %s", offsets, err)
        except (KafkaError, TimeoutError) as err:
            # Keep the offsets: a later commit covers them.
            raise Unavailable("offsets not committed; retry", retry_after_ms=RETRY_AFTER_MS) from err
        self._committed_at = time.monotonic()
        for tp, offset in offsets.items():
            if self._durable.get(tp) == offset:
                del self._durable[tp]

    async def _revoked(self, partitions: set[int]) -> None:
        # Still the owner until this returns: what is durable is committed now, so the next owner
        # (after every deploy or scaling step: rebalances revoke everything) does not redo it.
        if any(tp.partition in partitions for tp in self._durable):
            try:
                await self._commit_durable()
            except Unavailable:
                log.warning("durable offsets not committed before a rebalance: the next owner replays them")
        # What was returned from a lost partition is delivered again to its next owner; committing
        # it later could skip or undo that owner's progress, even if the partition came back.
        self._returned = {tp: o for tp, o in self._returned.items() if tp.partition not in partitions}
        self._durable = {tp: o for tp, o in self._durable.items() if tp.partition not in partitions}
        for partition in partitions:  # another member reports them now
            with contextlib.suppress(KeyError):
                metrics.CONSUMER_LAG.remove(self._topic, str(partition))
        if self._on_revoked is not None:
            self._on_revoked(partitions)

    def _assigned(self, partitions: set[int]) -> None:
        if self._on_assigned is not None:
            self._rebalanced = True  # a watcher wants to act on it before more records
            self._on_assigned(partitions)


class _Rebalance(ConsumerRebalanceListener):
    """aiokafka's rebalance callbacks, as partition numbers of the one subscribed topic."""

    def __init__(self, revoked: Callable[[set[int]], Awaitable[None]], assigned: PartitionsHook) -> None:
        self._revoked = revoked
        self._assigned = assigned

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._revoked({tp.partition for tp in revoked})

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._assigned({tp.partition for tp in assigned})


async def ensure_topics(bootstrap_servers: str, topics: list[str], partitions: int, *,
                        replication_factor: int = 1, min_insync_replicas: int | None = None) -> None:
    """Creates the topics that are missing with `partitions` partitions, `replication_factor`
    copies and, if given, `min.insync.replicas`, and refuses to go on if one exists with another
    partition count: conversation -> partition -> outbox shard would change. An existing topic's
    replication is left as it is (changing it is a partition reassignment, an operator's job)."""
    # acks=all waits for the in-sync replicas only: without a floor on them, a publish is
    # acknowledged by the leader alone once the followers fall behind.
    configs = {"min.insync.replicas": str(min_insync_replicas)} if min_insync_replicas is not None else None
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="parley-setup")
    await admin.start()
    try:
        created = await admin.create_topics([
            NewTopic(t, num_partitions=partitions, replication_factor=replication_factor, topic_configs=configs)
            for t in topics])
        for topic, code, message in created.topic_errors:
            if code not in (0, TopicAlreadyExistsError.errno):
                raise RuntimeError(f"topic {topic} not created: error {code} {message}")
        for desc in await admin.describe_topics(topics):
            found = len(desc.get("partitions", []))
            if found != partitions:
                raise RuntimeError(f"topic {desc.get('topic')} has {found} partitions, "
                                   f"PARLEY_KAFKA_PARTITIONS is {partitions}")
            copies = min((len(p.get("replicas", [])) for p in desc.get("partitions", [])), default=0)
            if copies < replication_factor:
                log.warning("topic %s has %d replicas per partition, fewer than PARLEY_KAFKA_REPLICATION_FACTOR "
                            "%d: it was created before; reassign its partitions to add copies",
                            desc.get("topic"), copies, replication_factor)
        if min_insync_replicas is not None:
            await _check_min_insync(admin, topics, str(min_insync_replicas))
    finally:
        await admin.close()


async def _check_min_insync(admin: AIOKafkaAdminClient, topics: list[str], wanted: str) -> None:
    """Topics created before the setting keep their own floor: say so (changing a topic's config
    is left to its operator, as its replication is)."""
    (described,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t) for t in topics])
    for _code, _message, _type, topic, entries in described.resources:
        found = next((entry[1] for entry in entries if entry[0] == "min.insync.replicas"), None)
        if found != wanted:
            log.warning("topic %s has min.insync.replicas %s, not PARLEY_KAFKA_MIN_INSYNC_REPLICAS %s: it was "
                        "created before; set it with kafka-configs --alter", topic, found, wanted)
