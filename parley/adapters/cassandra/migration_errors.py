"""What `parley migrate` can fail with, each mapped to its own exit code by parley/cli.py.

MigrationError          a recorded migration has changed since it was applied (or any other
 |                      failure of the runner that waiting will not fix)
 +-- SchemaBehind       packaged migrations not applied yet (`--check`, `--wait` at its timeout)
 +-- SchemaLocked       another runner held the schema lock for longer than this one would wait
 +-- LeaseLost          this runner's lease lapsed or was taken over while it was migrating

A Cassandra that does not answer is parley.errors.Unavailable, as everywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone


class MigrationError(RuntimeError):
    @property
    def message(self) -> str:
        return str(self)


class SchemaBehind(MigrationError):
    def __init__(self, missing: list[str], total: int) -> None:
        super().__init__(f"{len(missing)} of {total} migrations not applied: {', '.join(missing)}")
        self.missing = missing


@dataclass(frozen=True)
class Holder:
    """Who holds the schema lock, from its row."""

    owner: str
    since_ms: int

    def describe(self) -> str:
        since = datetime.fromtimestamp(self.since_ms / 1000, tz=timezone.utc).isoformat(timespec="seconds")
        return f"{self.owner} since {since}"


class SchemaLocked(MigrationError):
    def __init__(self, holder: Holder | None, waited_s: float, ttl_s: int) -> None:
        who = holder.describe() if holder is not None else "another runner (it let go as this one gave up)"
        super().__init__(f"the schema lock is held by {who}; gave up after waiting {waited_s:g} s. It is "
                         f"released when that run ends, or {ttl_s} s after its last renewal if it died")
        self.holder = holder


class LeaseLost(MigrationError):
    pass
