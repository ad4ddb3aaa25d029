"""`parley migrate` on the in-memory model of Cassandra (tests/cassandra_model.py): the schema
lock (a lease taken by LWT, freed by its TTL), `--check` and `--wait`, and the CLI's exit codes.
What only a real cluster shows (Paxos under contention, schema agreement) is not here."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest

from parley.app import cli
from parley.adapters.cassandra import session as cql_session
from parley.adapters.cassandra.lease import LOCK_NAME, LeaseSettings, SchemaLease, schema_lock
from parley.adapters.cassandra.migrate import check, checksum, migrate, pending, wait_until_current
from parley.adapters.cassandra.migration_errors import LeaseLost, MigrationError, SchemaBehind, SchemaLocked
from parley.errors import Unavailable
from parley.migrations import migration_files
from tests.cassandra_model import ModelSession

FILES = migration_files("cassandra")
VERSIONS = [v for v, _, _ in FILES]
NAMES = [n for _, n, _ in FILES]


def runner(owner: str, wait_s: float = 5.0, ttl_s: int = 60) -> LeaseSettings:
    return LeaseSettings(owner=owner, ttl_s=ttl_s, wait_s=wait_s, poll_s=0.01)


def edited() -> list[tuple[int, str, str]]:
    (v, name, text), *rest = FILES
    return [(v, name, text + "\n-- edited"), *rest]


class FakeTime:
    """The model's clock for TTL expiry, moved by hand."""

    def __init__(self, session: ModelSession) -> None:
        self.now = 1_000_000.0
        session.time = lambda: self.now


async def lock_row(session: ModelSession) -> list[tuple[object, ...]]:
    return (await session.execute("migration_lock_holder", [LOCK_NAME])).rows


# ---- the schema lock ----------------------------------------------------------------------

async def test_two_racing_runners_apply_the_schema_once_and_one_at_a_time():
    session = ModelSession(interleave=True)
    held_during_ddl: set[object] = set()
    ddl = session.ddl

    async def watched(cql: str) -> None:
        held_during_ddl.update(row[0] for row in await lock_row(session))
        await ddl(cql)

    session.ddl = watched  # type: ignore[method-assign]
    a, b = await asyncio.gather(migrate(session, lock=runner("a")), migrate(session, lock=runner("b")))
    assert sorted([a, b]) == [[], VERSIONS]
    assert held_during_ddl == {"a" if a else "b"}  # every DDL statement ran under the applier's lease
    assert await lock_row(session) == []  # released


async def test_a_second_runner_waits_for_the_holder_then_finds_nothing_to_apply():
    session = ModelSession(interleave=True)
    said: list[str] = []
    async with schema_lock(session, runner("first")):
        second = asyncio.create_task(migrate(session, say=said.append, lock=runner("second")))
        await asyncio.sleep(0.1)
        assert not second.done()
        assert said and "first since " in said[0]
        for version, name, text in FILES:  # what the first runner applies while it holds the lock
            await session.execute("migration_record", [version, name, checksum(text), 1])
    assert await second == []


async def test_a_runner_gives_up_after_its_bound_and_names_the_holder():
    session = ModelSession()
    FakeTime(session)
    holder = SchemaLease(session, runner("job-7x2/pid 1/abc"))
    assert await holder.try_acquire()
    with pytest.raises(SchemaLocked) as err:
        await migrate(session, lock=runner("by-hand", wait_s=0.05))
    message = err.value.message
    assert "held by job-7x2/pid 1/abc since 20" in message and "gave up after waiting" in message
    assert err.value.holder is not None and err.value.holder.owner == "job-7x2/pid 1/abc"
    assert await pending(session) == NAMES  # nothing was applied
    assert [r[0] for r in await lock_row(session)] == ["job-7x2/pid 1/abc"]  # and the lock is untouched


async def test_the_lease_of_a_runner_that_died_expires_by_its_ttl():
    session = ModelSession()
    clock = FakeTime(session)
    dead = SchemaLease(session, runner("dead", ttl_s=60))
    assert await dead.try_acquire()  # ... and never renews nor releases
    with pytest.raises(SchemaLocked):
        await migrate(session, lock=runner("next", wait_s=0))
    clock.now += 59
    with pytest.raises(SchemaLocked):
        await migrate(session, lock=runner("next", wait_s=0))
    clock.now += 2
    assert await migrate(session, lock=runner("next", wait_s=0)) == VERSIONS


async def test_a_renewed_lease_outlives_its_ttl_and_a_lapsed_one_is_lost():
    session = ModelSession()
    clock = FakeTime(session)
    lease = SchemaLease(session, runner("a", ttl_s=60))
    assert await lease.try_acquire()
    for _ in range(3):
        clock.now += 50
        assert await lease.renew()
    assert not await SchemaLease(session, runner("b")).try_acquire()
    clock.now += 61  # no renewal in time: another runner takes it
    assert await SchemaLease(session, runner("b")).try_acquire()
    assert not await lease.renew()
    with pytest.raises(LeaseLost):
        lease.check()
    await lease.release()  # only its own row: b keeps the lock
    assert [r[0] for r in await lock_row(session)] == ["b"]


async def test_a_runner_whose_renewals_fail_stops_before_its_next_statement():
    session = ModelSession()
    now = [0.0]
    lease = SchemaLease(session, runner("a", ttl_s=60), clock=lambda: now[0])
    assert await lease.try_acquire()
    now[0] = 39.0
    lease.check()  # more than a renewal interval left
    now[0] = 41.0
    with pytest.raises(LeaseLost, match="run `parley migrate` again"):
        lease.check()


async def test_the_lock_is_released_when_a_migration_fails():
    session = ModelSession()
    await migrate(session, lock=runner("a"))
    with pytest.raises(MigrationError):
        await migrate(session, files=edited(), lock=runner("b"))
    assert await lock_row(session) == []


# ---- --check and --wait -------------------------------------------------------------------

async def test_check_reports_missing_then_passes_then_reports_a_changed_migration():
    session = ModelSession()
    with pytest.raises(SchemaBehind) as err:
        await check(session)
    assert err.value.missing == NAMES and err.value.message.startswith(f"{len(NAMES)} of {len(NAMES)} migrations")
    with pytest.raises(SchemaBehind):
        await check(None)  # no keyspace yet
    await migrate(session, files=FILES[:1])
    with pytest.raises(SchemaBehind) as err:
        await check(session)
    assert err.value.missing == NAMES[1:]
    await migrate(session)
    await check(session)
    with pytest.raises(MigrationError, match="has changed since") as changed:
        await check(session, files=edited())
    assert not isinstance(changed.value, SchemaBehind)


async def test_wait_returns_once_another_task_migrates():
    session = ModelSession(interleave=True)
    opened: list[bool] = []

    async def open_session() -> ModelSession | None:
        opened.append(True)
        return None if len(opened) < 3 else session  # the keyspace appears on the third try

    said: list[str] = []
    waiter = asyncio.create_task(wait_until_current(open_session, 5.0, say=said.append, poll_s=0.01))
    await asyncio.sleep(0.1)
    assert not waiter.done() and len(opened) == 3
    assert said == [f"waiting for the schema: {len(NAMES)} of {len(NAMES)} migrations not applied: "
                    f"{', '.join(NAMES)}"]  # said once, not at every poll
    await migrate(session)
    await asyncio.wait_for(waiter, 1.0)


async def test_wait_gives_up_at_its_timeout_and_at_once_on_a_changed_migration():
    session = ModelSession()

    async def open_session() -> ModelSession:
        return session

    with pytest.raises(SchemaBehind):
        await wait_until_current(open_session, 0.05, poll_s=0.01)
    await migrate(session)
    with pytest.raises(MigrationError, match="has changed since"):
        await wait_until_current(open_session, 60.0, files=edited(), poll_s=0.01)


async def test_wait_rides_out_an_unreachable_cassandra():
    session = ModelSession()
    await migrate(session)
    session.fail = lambda names: True
    waiter = asyncio.create_task(wait_until_current(lambda: asyncio.sleep(0, session), 5.0, poll_s=0.01))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    session.fail = None
    await asyncio.wait_for(waiter, 1.0)
    session.fail = lambda names: True
    with pytest.raises(Unavailable):
        await wait_until_current(lambda: asyncio.sleep(0, session), 0.05, poll_s=0.01)


# ---- the command line ---------------------------------------------------------------------

@pytest.fixture
def on_model(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModelSession]:
    """`parley migrate` with PARLEY_STORE=cassandra, its sessions on one model."""
    session = ModelSession()
    monkeypatch.setenv("PARLEY_STORE", "cassandra")
    monkeypatch.setenv("PARLEY_CASSANDRA_HOSTS", "db1")

    async def connect(cfg: object) -> ModelSession:
        return session

    monkeypatch.setattr(cql_session, "connect_for_migrations", connect)
    monkeypatch.setattr(cql_session, "connect_for_check", connect)
    yield session
    logging.getLogger("cassandra").setLevel(logging.NOTSET)  # --check quiets the driver's logger


def test_the_cli_exit_codes(on_model: ModelSession, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger="parley")
    assert cli.main(["migrate", "--check"]) == cli.EXIT_SCHEMA_BEHIND
    assert cli.main(["migrate", "--wait", "--timeout", "0"]) == cli.EXIT_SCHEMA_BEHIND
    behind = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(behind) == 2 and all("\n" not in m and NAMES[-1] in m for m in behind)
    assert cli.main(["migrate"]) == cli.EXIT_OK
    assert cli.main(["migrate", "--check"]) == cli.EXIT_OK
    assert cli.main(["migrate", "--wait", "--timeout", "600"]) == cli.EXIT_OK
    asyncio.run(SchemaLease(on_model, runner("someone else")).try_acquire())
    caplog.clear()
    assert cli.main(["migrate", "--lock-timeout", "0"]) == cli.EXIT_LOCKED
    assert "held by someone else since" in caplog.text
    on_model.fail = lambda names: True
    assert cli.main(["migrate", "--check"]) == cli.EXIT_FAILED


def test_the_cli_refuses_check_with_wait():
    with pytest.raises(SystemExit) as err:
        cli.main(["migrate", "--check", "--wait"])
    assert err.value.code == 2


def test_with_sqlite_check_and_wait_succeed_at_once(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PARLEY_STORE", "sqlite")
    for args in (["migrate", "--check"], ["migrate", "--wait", "--timeout", "600"], ["migrate"]):
        assert cli.main(args) == cli.EXIT_OK


def test_the_exit_codes_are_documented():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    paragraph = text.split("`parley migrate` exits 0", 1)[1].split("\n\n", 1)[0]
    for code in (cli.EXIT_FAILED, cli.EXIT_SCHEMA_BEHIND, cli.EXIT_LOCKED):
        assert f" {code} " in paragraph.replace("\n", " "), code


class _FakeDriverSession:
    def __init__(self, missing_table: bool) -> None:
        self.missing_table = missing_table
        self.closed = False

    def _statement(self, name: str) -> None:
        from cassandra import InvalidRequest

        if self.missing_table:
            raise InvalidRequest("unconfigured table schema_migrations")

    async def close(self) -> None:
        self.closed = True


async def test_check_connects_without_creating_and_reads_a_missing_keyspace_or_table_as_nothing_applied(
        monkeypatch: pytest.MonkeyPatch):
    """`--check`/`--wait` never create the keyspace or a table: the driver's InvalidRequest for a
    missing keyspace (USE) or runner table (PREPARE) means nothing is applied yet."""
    from cassandra import InvalidRequest

    cfg = cql_session.ClusterSettings(hosts=("h",), keyspace="parley", local_dc="dc1")
    calls: list[dict[str, object]] = []

    async def no_keyspace(cfg: object, **kwargs: object) -> object:
        calls.append(kwargs)
        raise InvalidRequest("Keyspace 'parley' does not exist")

    monkeypatch.setattr(cql_session.DriverSession, "connect", staticmethod(no_keyspace))
    assert await cql_session.connect_for_check(cfg) is None
    assert calls == [{"prepare": False}]  # and so create_keyspace=False

    for missing_table in (True, False):
        fake = _FakeDriverSession(missing_table)

        async def connect(cfg: object, **kwargs: object) -> object:
            return fake

        monkeypatch.setattr(cql_session.DriverSession, "connect", staticmethod(connect))
        got = await cql_session.connect_for_check(cfg)
        assert (got is None, fake.closed) == ((True, True) if missing_table else (False, False))
