"""The seam between the Cassandra store and a cluster: named statements in, rows out.

`DriverSession` is the real one (cassandra-driver): statements prepared once at open, token-
and DC-aware routing, LOCAL_QUORUM (LOCAL_SERIAL for conditions), and the driver's
ResponseFuture callbacks bridged onto the asyncio loop. `tests/cassandra_model.py` is the
in-memory stand-in the tests use when no cluster is reachable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from parley.adapters.cassandra.statements import RUNNER_TABLES, STATEMENTS, Stmt
from parley.errors import Unavailable

log = logging.getLogger(__name__)

Row = tuple[Any, ...]


class Page(NamedTuple):
    rows: list[Row]
    #: Opaque: pass back to `execute` for the next page; None when this was the last one.
    paging_state: bytes | None


class CqlSession(Protocol):
    async def execute(self, name: str, params: Sequence[Any], *, fetch_size: int | None = None,
                      paging_state: bytes | None = None) -> Page: ...

    async def batch(self, items: Sequence[tuple[str, Sequence[Any]]], *, conditional: bool = False) -> list[Row]:
        """One logged batch. With `conditional`, every statement must be in one partition and
        the rows are the LWT answer: row[0] is `[applied]`."""

    async def ddl(self, cql: str) -> None:
        """Schema changes (migrations): not prepared, waits for schema agreement."""

    async def close(self) -> None: ...


@dataclass(frozen=True)
class ClusterSettings:
    hosts: tuple[str, ...]
    keyspace: str
    local_dc: str
    port: int = 9042
    username: str | None = None
    password: str | None = None
    request_timeout_s: float = 10.0
    #: How the keyspace is created by `parley migrate` if it does not exist yet.
    replication: str = "{'class': 'NetworkTopologyStrategy', 'datacenter1': 3}"


def _unavailable_errors() -> tuple[type[BaseException], ...]:
    from cassandra import CoordinationFailure, OperationTimedOut, Timeout
    from cassandra import Unavailable as CUnavailable
    from cassandra.cluster import NoHostAvailable

    return (CUnavailable, Timeout, CoordinationFailure, OperationTimedOut, NoHostAvailable)


def _prepare(session: Any, stmt: Stmt) -> Any:
    from cassandra import ConsistencyLevel

    ps = session.prepare(stmt.cql)
    ps.consistency_level = getattr(ConsistencyLevel, stmt.consistency)
    ps.serial_consistency_level = getattr(ConsistencyLevel, stmt.serial)
    return ps


class DriverSession:
    """cassandra-driver behind CqlSession. Build with `await DriverSession.connect(...)`."""

    def __init__(self, cluster: Any, session: Any, prepared: dict[str, Any]) -> None:
        self._cluster = cluster
        self._session = session
        self._prepared = prepared
        self._unavailable = _unavailable_errors()

    @staticmethod
    async def connect(cfg: ClusterSettings, *, create_keyspace: bool = False, prepare: bool = True) -> "DriverSession":
        def build() -> DriverSession:
            from cassandra import ConsistencyLevel
            from cassandra.auth import PlainTextAuthProvider
            from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
            from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
            from cassandra.query import tuple_factory

            profile = ExecutionProfile(
                load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=cfg.local_dc)),
                consistency_level=ConsistencyLevel.LOCAL_QUORUM,
                serial_consistency_level=ConsistencyLevel.LOCAL_SERIAL,
                request_timeout=cfg.request_timeout_s,
                row_factory=tuple_factory,
            )
            auth = PlainTextAuthProvider(cfg.username, cfg.password) if cfg.username else None
            cluster = Cluster(list(cfg.hosts), port=cfg.port, execution_profiles={EXEC_PROFILE_DEFAULT: profile},
                              auth_provider=auth)
            try:
                session = cluster.connect()
                if create_keyspace:
                    session.execute(f"CREATE KEYSPACE IF NOT EXISTS {cfg.keyspace} WITH replication = {cfg.replication}")
                session.set_keyspace(cfg.keyspace)
                prepared = {}
                if prepare:  # every statement is prepared once; a missing table fails here, at start
                    for name, stmt in STATEMENTS.items():
                        if not name.startswith("migration_"):
                            prepared[name] = _prepare(session, stmt)
            except BaseException:  # a failed connect must not leave the driver's threads behind
                cluster.shutdown()
                raise
            return DriverSession(cluster, session, prepared)

        try:  # connecting and preparing block: keep them off the loop
            return await asyncio.to_thread(build)
        except _unavailable_errors() as exc:
            raise Unavailable(f"cassandra unreachable: {exc}", retry_after_ms=1000) from exc

    def _statement(self, name: str) -> Any:
        ps = self._prepared.get(name)
        if ps is None:  # the runner's statements are prepared on first use (after its table exists)
            ps = self._prepared[name] = _prepare(self._session, STATEMENTS[name])
        return ps

    async def _run(self, query: Any, paging_state: bytes | None = None) -> Page:
        """Bridge a ResponseFuture onto this loop: the driver calls back on its own thread."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Page] = loop.create_future()

        def settle_ok(rows: list[Row]) -> None:
            if not done.done():
                done.set_result(Page(list(rows), getattr(rf, "_paging_state", None)))

        def settle_err(exc: BaseException) -> None:
            if not done.done():
                done.set_exception(exc)

        rf = self._session.execute_async(query, paging_state=paging_state)
        rf.add_callbacks(lambda rows: loop.call_soon_threadsafe(settle_ok, rows),
                         lambda exc: loop.call_soon_threadsafe(settle_err, exc))
        try:
            return await done
        except self._unavailable as exc:
            raise Unavailable(f"cassandra: {type(exc).__name__}: {exc}", retry_after_ms=1000) from exc

    async def execute(self, name: str, params: Sequence[Any], *, fetch_size: int | None = None,
                      paging_state: bytes | None = None) -> Page:
        bound = self._statement(name).bind(list(params))
        if fetch_size is not None:
            bound.fetch_size = fetch_size
        return await self._run(bound, paging_state)

    async def batch(self, items: Sequence[tuple[str, Sequence[Any]]], *, conditional: bool = False) -> list[Row]:
        from cassandra import ConsistencyLevel
        from cassandra.query import BatchStatement, BatchType

        batch = BatchStatement(batch_type=BatchType.LOGGED, consistency_level=ConsistencyLevel.LOCAL_QUORUM,
                               serial_consistency_level=ConsistencyLevel.LOCAL_SERIAL)
        for name, params in items:
            batch.add(self._statement(name), list(params))
        return (await self._run(batch)).rows

    async def ddl(self, cql: str) -> None:
        def run() -> None:
            self._session.execute(cql, timeout=60)
            if not self._cluster.control_connection.wait_for_schema_agreement():
                raise Unavailable("schema agreement not reached", retry_after_ms=5000)

        await asyncio.to_thread(run)

    async def close(self) -> None:
        await asyncio.to_thread(self._cluster.shutdown)


async def connect_for_migrations(cfg: ClusterSettings) -> DriverSession:
    """The runner's session: creates the keyspace and the runner's own tables (schema_migrations,
    schema_lock) if missing. These IF NOT EXISTS statements run before the lock can exist."""
    session = await DriverSession.connect(cfg, create_keyspace=True, prepare=False)
    for table in RUNNER_TABLES:
        await session.ddl(table)
    return session


async def connect_for_check(cfg: ClusterSettings) -> DriverSession | None:
    """A session for `parley migrate --check` and `--wait`, which create nothing (only the runner
    changes the schema); None while the keyspace or `schema_migrations` does not exist yet."""
    from cassandra import InvalidRequest

    try:
        session = await DriverSession.connect(cfg, prepare=False)
    except InvalidRequest:  # "Keyspace ... does not exist" (from USE)
        return None
    try:
        await asyncio.to_thread(session._statement, "migration_applied")
    except InvalidRequest:  # "unconfigured table schema_migrations" (from PREPARE)
        await session.close()
        return None
    except _unavailable_errors() as exc:
        await session.close()
        raise Unavailable(f"cassandra: {type(exc).__name__}: {exc}", retry_after_ms=1000) from exc
    except BaseException:
        await session.close()
        raise
    return session
