"""The stores every store contract test runs on (the `reopen` fixture):
- "sqlite": the embedded store, on a temporary file.
- "cassandra-model": CassandraStore's own code (planning, claims, paging, id clocks) on the
  in-memory model of Cassandra semantics (tests/cassandra_model.py). It proves the adapter logic
  against the model, not against Cassandra.
- "cassandra": CassandraStore on a real Cassandra or ScyllaDB cluster, only when
  PARLEY_TEST_CASSANDRA_HOSTS is set (comma-separated hosts, optional :port;
  PARLEY_TEST_CASSANDRA_DC names the local datacenter, default datacenter1). Each test gets a
  fresh keyspace, migrated with `parley migrate`'s runner and dropped at the end. Without the
  variable these runs are skipped, with the reason."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from parley.adapters.cassandra.migrate import migrate
from parley.adapters.cassandra.session import ClusterSettings, DriverSession, connect_for_migrations
from parley.adapters.cassandra.store import CassandraStore
from parley.adapters.sqlite.store import SqliteStore
from parley.config import parse_hosts
from parley.ports import Store
from tests.cassandra_model import ModelSession

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


async def _sqlite(path: Path) -> SqliteStore:
    store = SqliteStore(path / "parley.db", synchronous="NORMAL")
    await store.open()
    return store


_models: dict[Path, ModelSession] = {}


async def _cassandra_model(path: Path) -> Store:
    # Reopening shares the model's tables, as a second connection to one cluster would.
    return CassandraStore(_models.setdefault(path, ModelSession()))


STORES: dict[str, Callable[[Path], Awaitable[Store]]] = {"sqlite": _sqlite, "cassandra-model": _cassandra_model}


@pytest.fixture(params=[*sorted(STORES), "cassandra"])
async def reopen(request: pytest.FixtureRequest,
                 tmp_path: Path) -> AsyncIterator[Callable[[], Awaitable[Store]]]:
    """Opens the store under test (again, for durability checks); closes every copy at the end."""
    opened: list[Store] = []
    factory: Callable[[Path], Awaitable[Store]]
    if request.param == "cassandra":
        factory = request.getfixturevalue("cassandra_store_factory")
    else:
        factory = STORES[request.param]

    async def open_() -> Store:
        store = await factory(tmp_path)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        await store.close()
