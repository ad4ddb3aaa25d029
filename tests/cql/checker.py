"""Checks CQL without a server: the migrations build a schema, and every prepared statement is
checked against it by the rules Cassandra enforces when it prepares a statement (tables and
columns exist, the whole partition key is restricted, clustering restrictions are a prefix
with a range only on the last, conditions and timestamps are not mixed, INSERT sets the whole
primary key, ...). The syntax is checked separately by cqlsh's own grammar (`cqlsh_syntax`).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field

from parley.adapters.cassandra.migrate import split_script
from tests.cql.grammar import (
    RANGE_OPS, CqlSyntaxError, CreateTable, Delete, Insert, Relation, Select, Statement, Update, bind_count, parse,
)

_SCALARS = {"text", "varchar", "ascii", "bigint", "int", "smallint", "tinyint", "varint", "boolean", "blob",
            "timestamp", "uuid", "timeuuid", "double", "float", "decimal", "date", "time", "inet", "counter"}
_COLLECTIONS = {"list", "set", "map", "frozen", "tuple"}


@dataclass
class Schema:
    tables: dict[str, CreateTable] = field(default_factory=dict)

    def add(self, stmt: CreateTable) -> list[str]:
        problems = check_table(stmt)
        if stmt.table in self.tables and not stmt.if_not_exists:
            problems.append(f"{stmt.table}: created twice")
        self.tables.setdefault(stmt.table, stmt)
        return problems


def schema_from(scripts: Iterable[str]) -> tuple[Schema, list[str]]:
    schema, problems = Schema(), []
    for script in scripts:
        for text in split_script(script):
            try:
                stmt = parse(text)
            except CqlSyntaxError as exc:
                problems.append(f"{text[:40]}...: {exc}")
                continue
            if not isinstance(stmt, CreateTable):
                problems.append(f"{text[:40]}...: migrations here only create tables")
                continue
            problems += schema.add(stmt)
    return schema, problems


def _base_type(type_: str) -> str:
    return type_.split("<", 1)[0]


def check_table(t: CreateTable) -> list[str]:
    p = []
    for col, type_ in t.columns.items():
        for part in re.findall(r"[a-z_]+", type_):
            if part not in _SCALARS | _COLLECTIONS:
                p.append(f"{t.table}.{col}: unknown type {part}")
    for col in t.partition_key + t.clustering:
        if col not in t.columns:
            p.append(f"{t.table}: key column {col} is not defined")
        elif _base_type(t.columns[col]) in {"list", "set", "map"}:
            p.append(f"{t.table}: key column {col} is a non-frozen collection")
    if len(set(t.partition_key + t.clustering)) != len(t.partition_key) + len(t.clustering):
        p.append(f"{t.table}: a key column is repeated")
    if t.clustering_order and list(t.clustering_order) != t.clustering[:len(t.clustering_order)]:
        p.append(f"{t.table}: CLUSTERING ORDER BY must list the clustering columns in key order")
    if t.clustering_order and len(t.clustering_order) != len(t.clustering):
        p.append(f"{t.table}: CLUSTERING ORDER BY must name every clustering column")
    for key, value in t.options.items():
        if key in ("default_time_to_live", "gc_grace_seconds") and not re.fullmatch(r"\d+", value):
            p.append(f"{t.table}: {key} must be a non-negative integer")
    return p


def _restrictions(t: CreateTable, where: list[Relation], what: str) -> tuple[list[str], dict[str, list[Relation]]]:
    p: list[str] = []
    by_col: dict[str, list[Relation]] = {}
    for rel in where:
        if rel.column not in t.columns:
            p.append(f"{what}: no column {rel.column} in {t.table}")
            continue
        by_col.setdefault(rel.column, []).append(rel)
    for col in t.partition_key:
        rels = by_col.get(col, [])
        if not rels:
            p.append(f"{what}: partition key column {col} of {t.table} is not restricted")
        elif any(r.op not in ("=", "IN") for r in rels) or len(rels) > 1:
            p.append(f"{what}: partition key column {col} must be restricted by = or IN only")
    for col in by_col:
        if col not in t.partition_key and col not in t.clustering:
            p.append(f"{what}: {col} is not a key column of {t.table} (would need ALLOW FILTERING)")
    # clustering: a prefix; every column before the last restricted one restricted by =
    restricted = [c for c in t.clustering if c in by_col]
    if restricted:
        last = t.clustering.index(restricted[-1])
        for col in t.clustering[:last + 1]:
            crels = by_col.get(col)
            if not crels:
                p.append(f"{what}: clustering column {col} of {t.table} must be restricted before "
                         f"{restricted[-1]} (restrictions must be a prefix)")
            elif col != t.clustering[last] and any(r.op != "=" for r in crels):
                p.append(f"{what}: clustering column {col} is restricted by a range but is not the last "
                         "restricted one")
        tail = by_col[t.clustering[last]]
        ops = sorted(r.op for r in tail)
        if len(tail) > 1 and not (len(tail) == 2 and ops[0] in ("<", "<=") and ops[1] in (">", ">=")):
            p.append(f"{what}: {t.clustering[last]} restricted inconsistently ({', '.join(ops)})")
    return p, by_col


def _full_key_by_equality(t: CreateTable, by_col: dict[str, list[Relation]], what: str) -> list[str]:
    return [f"{what}: {col} must be restricted by = (a write names one row)"
            for col in t.partition_key + t.clustering
            if col in by_col and any(r.op != "=" for r in by_col[col])] + \
           [f"{what}: clustering column {col} of {t.table} is not restricted (a write names one row)"
            for col in t.clustering if col not in by_col]


def check_statement(schema: Schema, stmt: Statement, what: str = "statement") -> list[str]:
    t = schema.tables.get(stmt.table)
    if t is None:
        return [f"{what}: no table {stmt.table}"]
    p: list[str] = []
    if isinstance(stmt, CreateTable):
        return [f"{what}: DDL is not prepared"]
    if isinstance(stmt, Select):
        for col in stmt.columns:
            if col not in t.columns:
                p.append(f"{what}: no column {col} in {t.table}")
        rp, by_col = _restrictions(t, stmt.where, what)
        p += rp
        if stmt.order_by:
            if any(r.op != "=" for c in t.partition_key for r in by_col.get(c, [])):
                p.append(f"{what}: ORDER BY needs the partition key restricted by =")
            cols = [c for c, _ in stmt.order_by]
            if cols != t.clustering[:len(cols)]:
                p.append(f"{what}: ORDER BY must follow the clustering columns in order ({t.clustering})")
            else:
                flips = {(d != t.clustering_order.get(c, "ASC")) for c, d in stmt.order_by}
                if len(flips) > 1:
                    p.append(f"{what}: ORDER BY must keep or reverse the clustering order as a whole")
        return p
    if stmt.using.get("TTL") is not None and isinstance(stmt, Delete):
        p.append(f"{what}: DELETE cannot set a TTL")
    conditional = (stmt.if_not_exists if isinstance(stmt, Insert) else bool(stmt.if_exists or stmt.conditions))
    if conditional and "TIMESTAMP" in stmt.using:
        p.append(f"{what}: a conditional statement cannot set its own timestamp (USING TIMESTAMP)")
    if isinstance(stmt, Insert):
        if len(stmt.columns) != len(stmt.values):
            p.append(f"{what}: {len(stmt.columns)} columns but {len(stmt.values)} values")
        if len(set(stmt.columns)) != len(stmt.columns):
            p.append(f"{what}: a column is set twice")
        for col in stmt.columns:
            if col not in t.columns:
                p.append(f"{what}: no column {col} in {t.table}")
        for col in t.partition_key + t.clustering:
            if col not in stmt.columns:
                p.append(f"{what}: INSERT must set primary key column {col} of {t.table}")
        return p
    rp, by_col = _restrictions(t, stmt.where, what)
    p += rp
    if isinstance(stmt, Update):
        for col, _ in stmt.assignments:
            if col not in t.columns:
                p.append(f"{what}: no column {col} in {t.table}")
            elif col in t.partition_key or col in t.clustering:
                p.append(f"{what}: primary key column {col} cannot be updated")
        p += _full_key_by_equality(t, by_col, what)
    else:
        for col in stmt.columns:
            if col not in t.columns:
                p.append(f"{what}: no column {col} in {t.table}")
        if conditional or stmt.columns:
            p += _full_key_by_equality(t, by_col, what)
    for cond in stmt.conditions:
        if cond.column not in t.columns:
            p.append(f"{what}: no column {cond.column} in {t.table} (IF)")
        elif cond.column in t.partition_key or cond.column in t.clustering:
            p.append(f"{what}: IF cannot test primary key column {cond.column}")
        elif cond.op in RANGE_OPS and _base_type(t.columns[cond.column]) in {"list", "set", "map"}:
            p.append(f"{what}: IF {cond.column} {cond.op}: no ordering on collections")
    return p


def check_conditional_batch(schema: Schema, stmts: list[Statement], what: str) -> list[str]:
    """A batch with conditions must stay in one partition of one table: statically, one table
    (the store groups by partition values at run time, and the model enforces that)."""
    tables = {s.table for s in stmts}
    if len(tables) != 1:
        return [f"{what}: a conditional batch spans tables {sorted(tables)}"]
    return []


# ---- cqlsh's grammar as the syntax gate ------------------------------------------------------


def cqlsh_syntax(text: str) -> str | None:
    """None if cqlsh's grammar (cqlshlib, the Cassandra project's shell) parses the whole
    statement, else a reason. Its lexer has no bind markers, so `?` becomes a literal first
    (`IN ?` becomes `IN (0)`); that is sound, a marker stands wherever a literal may."""
    with warnings.catch_warnings():  # cqlshlib imports sre_constants, deprecated since 3.11
        warnings.simplefilter("ignore", DeprecationWarning)
        from cqlshlib.cql3handling import CqlRuleSet  # test dependency (PyPI `cqlsh`)

    literal = re.sub(r"\bIN \?", "IN (0)", text, flags=re.IGNORECASE).replace("?", "0").rstrip().rstrip(";") + ";"
    try:
        tokens = CqlRuleSet.cql_massage_tokens(CqlRuleSet.lex(literal))
    except Exception as exc:  # cqlshlib's LexingError
        return f"cqlsh cannot lex it: {exc}"
    if CqlRuleSet.cql_whole_parse_tokens(tokens, srcstr=literal) is None:
        return "cqlsh's grammar does not parse it"
    return None


def check_all(statements: dict[str, str], scripts: Iterable[str], conditional_batches: dict[str, tuple[str, ...]],
              syntax: bool = True) -> list[str]:
    """Every problem found in the migrations and the named statements; [] when all is well."""
    scripts = list(scripts)
    schema, problems = schema_from(scripts)
    if syntax:
        for script in scripts:
            for text in split_script(script):
                reason = cqlsh_syntax(text)
                if reason:
                    problems.append(f"migration {text[:50]!r}: {reason}")
    parsed: dict[str, Statement] = {}
    for name, text in statements.items():
        try:
            stmt = parse(text)
        except CqlSyntaxError as exc:
            problems.append(f"{name}: {exc}")
            continue
        parsed[name] = stmt
        problems += check_statement(schema, stmt, name)
        if syntax and (reason := cqlsh_syntax(text)):
            problems.append(f"{name}: {reason}")
        if bind_count(stmt) != text.count("?"):
            problems.append(f"{name}: a literal where a bind marker belongs, or the reverse")
    for batch, names in conditional_batches.items():
        missing = [n for n in names if n not in parsed]
        problems += [f"batch {batch}: unknown statement {n}" for n in missing]
        if not missing:
            problems += check_conditional_batch(schema, [parsed[n] for n in names], f"batch {batch}")
    return problems
