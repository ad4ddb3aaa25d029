"""A real Cassandra / ScyllaDB for the store contract, when PARLEY_TEST_CASSANDRA_HOSTS is set
(comma-separated hosts, optional :port; PARLEY_TEST_CASSANDRA_DC names the local datacenter,
default datacenter1). Each run gets a fresh keyspace, migrated with `parley migrate`'s runner,
and drops it at the end. Without the variable the "cassandra" runs are skipped, with the reason."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from parley.adapters.cassandra.store import CassandraStore
from parley.adapters.cassandra.migrate import migrate
from parley.adapters.cassandra.session import ClusterSettings, DriverSession, connect_for_migrations
from parley.config import parse_hosts

HOSTS = os.environ.get("PARLEY_TEST_CASSANDRA_HOSTS", "")


@pytest.fixture(scope="session")
def cassandra_cluster() -> ClusterSettings:
    if not HOSTS:
        pytest.skip("no Cassandra here: set PARLEY_TEST_CASSANDRA_HOSTS to run the contract on a real cluster")
    hosts, port = parse_hosts(HOSTS)
    return ClusterSettings(hosts=hosts, port=port, keyspace=f"parley_test_{secrets.token_hex(4)}",
                           local_dc=os.environ.get("PARLEY_TEST_CASSANDRA_DC", "datacenter1"),
                           replication="{'class': 'SimpleStrategy', 'replication_factor': 1}")


@pytest.fixture
async def cassandra_store_factory(cassandra_cluster: ClusterSettings) -> AsyncIterator[Callable[[Path], Awaitable[CassandraStore]]]:
    # One keyspace per test keeps the tests independent (they reuse conversation ids).
    cfg = ClusterSettings(**{**cassandra_cluster.__dict__, "keyspace": f"{cassandra_cluster.keyspace}_{secrets.token_hex(3)}"})
    admin = await connect_for_migrations(cfg)
    await migrate(admin)

    async def open_(_: Path) -> CassandraStore:
        return CassandraStore(await DriverSession.connect(cfg))

    yield open_
    await admin.ddl(f"DROP KEYSPACE IF EXISTS {cfg.keyspace}")
    await admin.close()
