"""The Cassandra migration runner behind `parley migrate`: applies the packaged CQL files
(parley/migrations/cassandra/NNNN_name.cql) in version order, each once, and records them in
`schema_migrations` (version, name, checksum, applied_at). Every migration statement is
idempotent (IF NOT EXISTS), so a run interrupted half way is finished by the next one. Run one
runner at a time (a Kubernetes Job): concurrent schema changes can disagree on a cluster.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

from parley.adapters.cql.checker import migration_files
from parley.adapters.cql.grammar import split_script
from parley.adapters.cql.session import CqlSession


class MigrationError(RuntimeError):
    pass


def checksum(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


async def migrate(session: CqlSession, say: Callable[[str], None] = lambda _: None,
                  files: list[tuple[int, str, str]] | None = None) -> list[int]:
    """Apply what is missing; the versions applied by this run. `session` must be in the
    keyspace, with `schema_migrations` created (`connect_for_migrations` does both)."""
    done = []
    for version, name, text in files if files is not None else migration_files():
        page = await session.execute("migration_applied", [version])
        if page.rows:
            recorded, digest = page.rows[0]
            if (recorded, digest) != (name, checksum(text)):
                raise MigrationError(f"migration {version} was applied as {recorded} ({digest}) and has changed "
                                     f"since: add a new migration instead of editing {name}")
            continue
        for stmt in split_script(text):
            await session.ddl(stmt)
        await session.execute("migration_record", [version, name, checksum(text), int(time.time() * 1000)])
        say(f"applied {name}")
        done.append(version)
    return done
