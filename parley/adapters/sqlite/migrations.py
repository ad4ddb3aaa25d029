"""The SQLite schema and its upgrades, from parley/migrations/sqlite/: a new database is created
from schema.sql (this build's schema, whole); one made by an older build, its version in
`PRAGMA user_version`, first runs the upgrade steps numbered after its version (NNNN_name.sql
takes version NNNN-1 to NNNN), then schema.sql creates the tables added since. All in one
transaction: a failed upgrade leaves the old schema as it was."""

from __future__ import annotations

import re
import sqlite3
from importlib import resources

from parley.migrations import migration_files


def _statements(script: str) -> list[str]:
    """The statements of an upgrade step, comment lines dropped, each with the `;` that ends
    it (sqlite3.complete_statement: not one inside a string or a trigger's body)."""
    out: list[str] = []
    buf = ""
    for line in script.splitlines(keepends=True):
        if line.lstrip().startswith("--"):
            continue
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        raise ValueError(f"an upgrade step ends in an unfinished statement: {buf.strip()!r}")
    return out


_STEPS = {version: _statements(text) for version, _, text in migration_files("sqlite")}
SCHEMA_VERSION = max(_STEPS)
SCHEMA = resources.files("parley.migrations").joinpath("sqlite", "schema.sql").read_text(encoding="utf-8")

_ADD_COLUMN = re.compile(r"^ALTER TABLE (\w+) ADD COLUMN (\w+) ")
_COPY_FROM = re.compile(r"^INSERT .* FROM (\w+)", re.DOTALL)


def _needed(conn: sqlite3.Connection, sql: str) -> bool:
    """An ADD COLUMN is skipped when its table is absent (SCHEMA creates it whole) or has it; an
    INSERT ... SELECT FROM a table that is absent has nothing to copy."""
    copy = _COPY_FROM.match(sql)
    if copy is not None:
        return bool(conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                                 (copy.group(1),)).fetchone())
    match = _ADD_COLUMN.match(sql)
    if match is None:
        return True
    table, column = match.groups()
    columns = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
    return bool(columns) and column not in columns


def migrate(conn: sqlite3.Connection) -> None:
    """Brings the database on `conn` to SCHEMA_VERSION; RuntimeError if it is newer than that."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise RuntimeError(f"store schema {version} is newer than this build ({SCHEMA_VERSION})")
    steps = [sql for step in range((version or SCHEMA_VERSION) + 1, SCHEMA_VERSION + 1) for sql in _STEPS[step]
             if _needed(conn, sql)]
    try:  # one transaction: a failed upgrade leaves the old schema as it was
        conn.executescript("BEGIN IMMEDIATE;" + "".join(steps) + SCHEMA
                           + f"PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")
    except sqlite3.Error:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
