"""An in-memory model of the Cassandra semantics the store relies on, executing the very
statements of parley/adapters/cassandra/statements.py (parsed by tests/cql/grammar.py) against
tables built from the migrations.

It is a test stand-in for when no cluster is reachable, not a database: it models partitions
and clustering order (ASC/DESC, ORDER BY reversal, LIMIT, paging), upserts, cell timestamps
(USING TIMESTAMP, last write wins, a deletion shadows writes up to its timestamp), lightweight
transactions (IF NOT EXISTS / IF EXISTS / IF col op value, with the `[applied]` answer),
conditional batches (one partition only, all or nothing) and the expiry of cells and row markers
written `USING TTL` (on `ModelSession.time`, which a test may move forward). It does not model
tables' default_time_to_live, replication, consistency levels, Paxos contention, timeouts or
batch size limits.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from parley.adapters.cassandra.migrate import split_script
from parley.adapters.cassandra.session import Page, Row
from parley.adapters.cassandra.statements import RUNNER_TABLES, STATEMENTS, SYSTEM_TABLES
from parley.errors import Unavailable
from parley.migrations import migration_files
from tests.cql.grammar import CreateTable, Delete, Insert, Relation, Select, Statement, Update, parse


#: The `release_version` the model's node reports in `system.local`.
RELEASE = "5.0-model"


class InvalidRequest(Exception):
    """What Cassandra would answer with an InvalidRequest error."""


@dataclass
class _Row:
    marker: int | None = None  # INSERT's row liveness timestamp
    deleted_at: int = -1  # a row deletion shadows every write with a timestamp <= this
    cells: dict[str, tuple[Any, int]] = field(default_factory=dict)
    #: When a cell (or "" for the row marker) written USING TTL expires, in ModelSession.time.
    expires: dict[str, float] = field(default_factory=dict)

    def _alive(self, col: str, now: float) -> bool:
        return col not in self.expires or now < self.expires[col]

    def live(self, now: float) -> dict[str, Any]:
        return {c: v for c, (v, ts) in self.cells.items()
                if ts > self.deleted_at and v is not None and self._alive(c, now)}

    def exists(self, now: float) -> bool:
        return (self.marker is not None and self.marker > self.deleted_at and self._alive("", now)) \
            or bool(self.live(now))


class _Table:
    def __init__(self, ddl: CreateTable) -> None:
        self.ddl = ddl
        self.partitions: dict[tuple[Any, ...], dict[tuple[Any, ...], _Row]] = {}

    def sort_key(self, ck: tuple[Any, ...]) -> tuple[Any, ...]:
        out = []
        for col, v in zip(self.ddl.clustering, ck):
            desc = self.ddl.clustering_order.get(col, "ASC") == "DESC"
            out.append(_Rev(v) if desc else v)
        return tuple(out)


class _Rev:
    __slots__ = ("v",)

    def __init__(self, v: Any) -> None:
        self.v = v

    def __lt__(self, other: "_Rev") -> bool:
        return bool(self.v > other.v)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Rev) and self.v == other.v


_CMP = {"=": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


class ModelSession:
    """CqlSession over in-memory tables. Tests may set `fail` (a predicate on the statement
    names of a request: True makes it raise Unavailable without writing) and `interleave`
    (yield to the loop before each request, so two stores on one model really race)."""

    def __init__(self, interleave: bool = False) -> None:
        self.interleave = interleave
        self.fail: Callable[[list[str]], bool] | None = None
        self.tables: dict[str, _Table] = {}
        self._parsed: dict[str, Statement] = {name: parse(s.cql) for name, s in STATEMENTS.items()}
        self._clock = itertools.count(int(time.time() * 1_000_000))
        #: Seconds, for TTL expiry only (write timestamps come from `_clock`): a test may replace it.
        self.time: Callable[[], float] = time.time
        self.calls: list[str] = []  # statement names in execution order (batches as "batch:<names>")
        for script in [*RUNNER_TABLES, SYSTEM_TABLES] + [text for _, _, text in migration_files("cassandra")]:
            for text in split_script(script):
                ddl = parse(text)
                assert isinstance(ddl, CreateTable)
                self.tables.setdefault(ddl.table, _Table(ddl))
        # What a node answers about itself.
        self.tables["system.local"].partitions[("local",)] = {(): _Row(cells={"release_version": (RELEASE, 0)})}

    # ---- CqlSession -------------------------------------------------------------------------

    async def execute(self, name: str, params: Sequence[Any], *, fetch_size: int | None = None,
                      paging_state: bytes | None = None) -> Page:
        await self._enter([name])
        stmt = self._parsed[name]
        if isinstance(stmt, Select):
            rows = self._select(stmt, list(params))
            start = int(paging_state or b"0")
            if fetch_size is None:
                return Page(rows[start:], None)
            end = start + fetch_size
            return Page(rows[start:end], str(end).encode() if end < len(rows) else None)
        return Page(self._write([(stmt, list(params))], conditional=_is_conditional(stmt)), None)

    async def batch(self, items: Sequence[tuple[str, Sequence[Any]]], *, conditional: bool = False) -> list[Row]:
        await self._enter([name for name, _ in items], batch=True)
        stmts = [(self._parsed[name], list(params)) for name, params in items]
        has_conditions = any(_is_conditional(s) for s, _ in stmts)
        if has_conditions != conditional:
            raise InvalidRequest("conditional flag does not match the statements")
        return self._write(stmts, conditional=has_conditions)

    async def _enter(self, names: list[str], batch: bool = False) -> None:
        if self.interleave:
            await asyncio.sleep(0)
        self.calls.append("batch:" + ",".join(names) if batch else names[0])
        if self.fail is not None and self.fail(names):
            raise Unavailable(f"injected failure of {names}", retry_after_ms=10)

    async def ddl(self, cql: str) -> None:
        ddl = parse(cql)
        assert isinstance(ddl, CreateTable)
        self.tables.setdefault(ddl.table, _Table(ddl))

    async def close(self) -> None:
        pass

    # ---- semantics ----------------------------------------------------------------------------

    def _bind(self, values: list[str], params: list[Any]) -> list[Any]:
        out = []
        for v in values:
            if v == "?":
                out.append(params.pop(0))
            elif v.startswith("'"):
                out.append(v[1:-1].replace("''", "'"))
            elif v in ("null", "true", "false"):
                out.append({"null": None, "true": True, "false": False}[v])
            else:
                out.append(int(v))
        return out

    def _where(self, t: _Table, where: list[Relation], params: list[Any]) -> tuple[tuple[Any, ...], list[tuple[str, str, Any]]]:
        vals = self._bind([r.value for r in where], params)
        eq = {r.column: v for r, v in zip(where, vals) if r.op == "="}
        missing = [c for c in t.ddl.partition_key if c not in eq]
        if missing:
            raise InvalidRequest(f"partition key {missing} not restricted")
        pk = tuple(eq[c] for c in t.ddl.partition_key)
        rest = [(r.column, r.op, v) for r, v in zip(where, vals) if r.column not in t.ddl.partition_key]
        return pk, rest

    def _select(self, s: Select, params: list[Any]) -> list[Row]:
        t = self.tables[s.table]
        pk, rest = self._where(t, s.where, params)
        limit = self._bind([s.limit], params)[0] if s.limit else None
        part = t.partitions.get(pk, {})
        keys = sorted(part, key=t.sort_key)
        if s.order_by and s.order_by[0][1] != t.ddl.clustering_order.get(s.order_by[0][0], "ASC"):
            keys.reverse()
        out: list[Row] = []
        now = self.time()
        for ck in keys:
            row = part[ck]
            if not row.exists(now):
                continue
            key = dict(zip(t.ddl.partition_key, pk)) | dict(zip(t.ddl.clustering, ck))
            if not all(_CMP[op](key[col], v) for col, op, v in rest):
                continue
            live = row.live(now) | key
            out.append(tuple(live.get(c) for c in s.columns))
            if limit is not None and len(out) >= limit:
                break
        return out

    def _target(self, t: _Table, stmt: Insert | Update | Delete, params: list[Any]) -> tuple[Any, Any, dict[str, Any]]:
        """(partition key, clustering key, values to write) of one write; params consumed in
        text order (USING before SET for UPDATE and DELETE, after VALUES for INSERT)."""
        using: dict[str, Any] = {}
        if isinstance(stmt, Insert):
            vals = dict(zip(stmt.columns, self._bind(stmt.values, params)))
            using = dict(zip(stmt.using, self._bind(list(stmt.using.values()), params)))
            pk = tuple(vals[c] for c in t.ddl.partition_key)
            ck = tuple(vals[c] for c in t.ddl.clustering)
            return pk, ck, {"_using": using, **{c: v for c, v in vals.items() if c not in pk_cols(t)}}
        using = dict(zip(stmt.using, self._bind(list(stmt.using.values()), params)))
        sets = {}
        if isinstance(stmt, Update):
            sets = dict(zip([c for c, _ in stmt.assignments], self._bind([v for _, v in stmt.assignments], params)))
        pk, rest = self._where(t, stmt.where, params)
        eq = {c: v for c, op, v in rest if op == "="}
        if any(c not in eq for c in t.ddl.clustering):
            raise InvalidRequest("writes in the model name whole rows")
        ck = tuple(eq[c] for c in t.ddl.clustering)
        return pk, ck, {"_using": using, **sets}

    def _write(self, stmts: list[tuple[Statement, list[Any]]], conditional: bool) -> list[Row]:
        planned = []
        for stmt, params in stmts:
            assert isinstance(stmt, (Insert, Update, Delete))
            t = self.tables[stmt.table]
            pk, ck, vals = self._target(t, stmt, params)
            conds = self._bind([c.value for c in getattr(stmt, "conditions", [])], params)
            planned.append((stmt, t, pk, ck, vals, conds))
        if conditional:
            if len({(s.table, pk) for s, _, pk, _, _, _ in planned}) > 1:
                raise InvalidRequest("Batch with conditions cannot span multiple partitions")
            answers = [self._check(*p) for p in planned]
            if not all(ok for ok, _ in answers):
                failed = next(existing for ok, existing in answers if not ok)
                return [(False, *failed)]
        now = next(self._clock)
        for stmt, t, pk, ck, vals, _ in planned:
            using = vals.pop("_using")
            ts = using.get("TIMESTAMP", now)
            ttl = using.get("TTL") or 0  # 0: no expiry, as in Cassandra
            row = t.partitions.setdefault(pk, {}).setdefault(ck, _Row())
            if isinstance(stmt, Delete):
                row.deleted_at = max(row.deleted_at, ts)
                continue
            if isinstance(stmt, Insert) and (row.marker is None or ts >= row.marker):
                row.marker = ts
                self._expire(row, "", ttl)
            for col, v in vals.items():
                old = row.cells.get(col)
                # last write wins; on a tie Cassandra keeps a deletion (None), else the larger value
                if old is None or ts > old[1] or (ts == old[1] and (v is None or (old[0] is not None and v > old[0]))):
                    row.cells[col] = (v, ts)
                    self._expire(row, col, ttl)
        return [(True,)] if conditional else []

    def _expire(self, row: _Row, col: str, ttl: int) -> None:
        if ttl:
            row.expires[col] = self.time() + ttl
        else:  # a write without a TTL replaces the cell, and its TTL with it
            row.expires.pop(col, None)

    def _check(self, stmt: Statement, t: _Table, pk: Any, ck: Any, vals: dict[str, Any],
               conds: list[Any]) -> tuple[bool, tuple[Any, ...]]:
        row = t.partitions.get(pk, {}).get(ck)
        now = self.time()
        exists = row is not None and row.exists(now)
        live = row.live(now) if row is not None and exists else {}
        existing = tuple(live.get(c) for c in t.ddl.columns if c not in pk_cols(t))
        if isinstance(stmt, Insert):
            return (not exists), existing
        assert isinstance(stmt, (Update, Delete))
        if stmt.if_exists:
            return exists, existing
        if not exists:
            return False, ()
        for cond, v in zip(stmt.conditions, conds):
            cur = live.get(cond.column)
            if cur is None or v is None:
                ok = (cond.op == "=" and cur is v) or (cond.op == "!=" and cur is not v)
            else:
                ok = _CMP[cond.op](cur, v)
            if not ok:
                return False, tuple(live.get(c.column) for c in stmt.conditions)
        return True, ()


def pk_cols(t: _Table) -> set[str]:
    return set(t.ddl.partition_key) | set(t.ddl.clustering)


def _is_conditional(stmt: Statement) -> bool:
    if isinstance(stmt, Insert):
        return stmt.if_not_exists
    if isinstance(stmt, (Update, Delete)):
        return stmt.if_exists or bool(stmt.conditions)
    return False
