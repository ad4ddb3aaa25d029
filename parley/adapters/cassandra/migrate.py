"""The Cassandra migration runner behind `parley migrate`: applies the packaged CQL files
(parley/migrations/cassandra/NNNN_name.cql) in version order, each once, and records them in
`schema_migrations` (version, name, checksum, applied_at). Every migration statement is
idempotent (IF NOT EXISTS), so a run interrupted half way is finished by the next one. A run
holds the schema lock (lease.py): a second runner waits for it, then finds nothing to apply.

`check` and `wait_until_current` only read: they tell a role (an init container) whether the
keyspace has every packaged migration.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import Awaitable, Callable

from parley.adapters.cassandra.lease import LeaseSettings, schema_lock
from parley.adapters.cassandra.migration_errors import MigrationError, SchemaBehind
from parley.adapters.cassandra.session import CqlSession
from parley.errors import Unavailable
from parley.migrations import migration_files

__all__ = ["MigrationError", "SchemaBehind", "check", "checksum", "migrate", "pending", "split_script",
           "wait_until_current"]

Files = list[tuple[int, str, str]]

#: How often `--wait` asks again.
WAIT_POLL_S = 5.0


def split_script(text: str) -> list[str]:
    """The statements of a migration file: comments dropped, split at `;` outside strings."""
    out: list[str] = []
    buf: list[str] = []
    quoted = False
    for line in text.splitlines():
        if not quoted:
            line = re.sub(r"--[^']*$", "", line) if "'" not in line else line
        for ch in line + "\n":
            if ch == "'":
                quoted = not quoted
            if ch == ";" and not quoted:
                stmt = "".join(buf).strip()
                if stmt:
                    out.append(stmt)
                buf = []
            else:
                buf.append(ch)
    if "".join(buf).strip():
        out.append("".join(buf).strip())
    return out



def checksum(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


async def _recorded(session: CqlSession, version: int, name: str, text: str) -> bool:
    """Whether `version` is recorded; MigrationError if it was recorded with other contents."""
    page = await session.execute("migration_applied", [version])
    if not page.rows:
        return False
    recorded, digest = page.rows[0]
    if (recorded, digest) != (name, checksum(text)):
        raise MigrationError(f"migration {version} was applied as {recorded} ({digest}) and has changed "
                             f"since: add a new migration instead of editing {name}")
    return True


async def migrate(session: CqlSession, say: Callable[[str], None] = lambda _: None,
                  files: Files | None = None, lock: LeaseSettings | None = None) -> list[int]:
    """Apply what is missing under the schema lock; the versions applied by this run. `session`
    must be in the keyspace, with the runner's tables created (`connect_for_migrations` does
    both). Raises SchemaLocked if another runner holds the lock past `lock.wait_s`."""
    async with schema_lock(session, lock or LeaseSettings(), say) as lease:
        done = []
        for version, name, text in files if files is not None else migration_files("cassandra"):
            if await _recorded(session, version, name, text):
                continue
            for stmt in split_script(text):
                lease.check()  # a DDL statement in flight cannot be called back: check before each
                await session.ddl(stmt)
            lease.check()
            await session.execute("migration_record", [version, name, checksum(text), int(time.time() * 1000)])
            say(f"applied {name}")
            done.append(version)
        return done


async def pending(session: CqlSession | None, files: Files | None = None) -> list[str]:
    """The packaged migrations not recorded yet, by file name, in order. None stands for a
    keyspace (or runner table) that does not exist yet: everything is pending."""
    files = files if files is not None else migration_files("cassandra")
    if session is None:
        return [name for _, name, _ in files]
    return [name for version, name, text in files if not await _recorded(session, version, name, text)]


async def check(session: CqlSession | None, files: Files | None = None) -> None:
    """`parley migrate --check`: returns if every packaged migration is recorded as packaged;
    SchemaBehind if some are missing, MigrationError if one has changed."""
    files = files if files is not None else migration_files("cassandra")
    missing = await pending(session, files)
    if missing:
        raise SchemaBehind(missing, len(files))


async def wait_until_current(open_session: Callable[[], Awaitable[CqlSession | None]], timeout_s: float,
                             say: Callable[[str], None] = lambda _: None, files: Files | None = None,
                             poll_s: float = WAIT_POLL_S) -> None:
    """`parley migrate --wait`: `check` until it passes. Missing migrations and an unreachable
    Cassandra are waited out until `timeout_s`, then the last of them is raised; a changed
    migration is raised at once (waiting will not fix it). `open_session` gives a session in
    the keyspace, or None while the keyspace does not exist; each session is closed here."""
    deadline = time.monotonic() + timeout_s
    session: CqlSession | None = None
    last = ""
    try:
        while True:
            try:
                if session is None:
                    session = await open_session()
                await check(session, files)
                return
            except (SchemaBehind, Unavailable) as exc:
                if isinstance(exc, Unavailable) and session is not None:
                    await session.close()  # connect again next time
                    session = None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise
                if exc.message != last:
                    say(f"waiting for the schema: {exc.message}")
                    last = exc.message
            await asyncio.sleep(min(poll_s, remaining))
    finally:
        if session is not None:
            await session.close()
