"""The packaged schema migrations of both stores: `cassandra/NNNN_name.cql`, applied by
`parley migrate` (parley/adapters/cassandra/migrate.py), and `sqlite/NNNN_name.sql`, the upgrade
steps SQLite applies to itself when it opens (parley/adapters/sqlite/migrations.py).

A Cassandra file's checksum, comments included, is recorded when it is applied and checked on
every run: an applied file is never edited, so the header of 0001_initial.cql still names the
modules of the time (cassandra_store.py and cql/ are parley/adapters/cassandra/ now)."""

from __future__ import annotations

import re
from importlib import resources
from typing import Literal

#: The file name ending of each store's migrations.
_SUFFIX = {"cassandra": "cql", "sqlite": "sql"}


def migration_files(store: Literal["cassandra", "sqlite"]) -> list[tuple[int, str, str]]:
    """(version, file name, text) of a store's numbered migrations, in version order."""
    pattern = re.compile(rf"(\d{{4}})_[a-z0-9_]+\.{_SUFFIX[store]}")
    out = []
    for entry in resources.files(__name__).joinpath(store).iterdir():
        m = pattern.fullmatch(entry.name)
        if m:
            out.append((int(m.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(out)
