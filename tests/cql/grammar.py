"""A parser for the subset of CQL 3 that Parley writes: CREATE TABLE, SELECT, INSERT, UPDATE
and DELETE with bind markers. It returns plain syntax trees for the checker (schema rules)
and the in-memory model; anything outside the subset is a CqlSyntaxError, not a guess.

The full grammar check is cqlsh's own (cqlshlib, see checker.py); this parser only has to
understand what it accepts well enough to reason about keys and clustering.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Union


class CqlSyntaxError(ValueError):
    pass


_TOKEN = re.compile(r"""
    (?P<ws>\s+|--[^\n]*)
  | (?P<string>'(?:[^']|'')*')
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*|"(?:[^"]|"")+")
  | (?P<op><=|>=|!=|[=<>(),;?{}:*.\[\]+-])
""", re.VERBOSE)

RANGE_OPS = ("<", "<=", ">", ">=")
REL_OPS = ("=", *RANGE_OPS, "IN")


def tokenize(text: str) -> list[str]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise CqlSyntaxError(f"cannot read {text[pos:pos + 20]!r}")
        pos = m.end()
        if m.lastgroup != "ws":
            out.append(m.group())
    return out


# ---- syntax trees ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Relation:
    column: str
    op: str  # = < <= > >= IN
    value: str  # "?" or a literal


@dataclass(frozen=True)
class Condition:
    column: str
    op: str
    value: str


@dataclass
class CreateTable:
    table: str
    columns: dict[str, str]  # name -> type
    partition_key: list[str]
    clustering: list[str]
    clustering_order: dict[str, str] = field(default_factory=dict)  # column -> ASC/DESC
    options: dict[str, str] = field(default_factory=dict)
    if_not_exists: bool = False


@dataclass
class Select:
    table: str
    columns: list[str]
    where: list[Relation]
    order_by: list[tuple[str, str]]
    limit: str | None


@dataclass
class Insert:
    table: str
    columns: list[str]
    values: list[str]
    if_not_exists: bool
    using: dict[str, str]  # TTL / TIMESTAMP -> "?" or literal


@dataclass
class Update:
    table: str
    using: dict[str, str]
    assignments: list[tuple[str, str]]
    where: list[Relation]
    if_exists: bool
    conditions: list[Condition]


@dataclass
class Delete:
    table: str
    columns: list[str]
    using: dict[str, str]
    where: list[Relation]
    if_exists: bool
    conditions: list[Condition]


Statement = Union[CreateTable, Select, Insert, Update, Delete]


# ---- the parser ------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = tokenize(text)
        self.i = 0

    def peek(self, k: int = 0) -> str | None:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def at(self, *words: str) -> bool:
        return all((self.peek(k) or "").upper() == w for k, w in enumerate(words))

    def accept(self, *words: str) -> bool:
        if self.at(*words):
            self.i += len(words)
            return True
        return False

    def expect(self, *words: str) -> None:
        if not self.accept(*words):
            raise CqlSyntaxError(f"expected {' '.join(words)} at {self.rest()!r}")

    def rest(self) -> str:
        return " ".join(self.toks[self.i:self.i + 6])

    def ident(self) -> str:
        tok = self.peek()
        if tok is None or not re.fullmatch(r'[A-Za-z_][A-Za-z0-9_]*|"(?:[^"]|"")+"', tok):
            raise CqlSyntaxError(f"expected a name at {self.rest()!r}")
        self.i += 1
        return tok[1:-1].replace('""', '"') if tok.startswith('"') else tok.lower()

    def table(self) -> str:
        """A table name, keyspace-qualified (`system.local`) or of the session's keyspace."""
        name = self.ident()
        return f"{name}.{self.ident()}" if self.accept(".") else name

    def value(self) -> str:
        tok = self.peek()
        if tok is None:
            raise CqlSyntaxError("expected a value at the end")
        if tok == "?" or tok.startswith("'") or re.fullmatch(r"-?\d+(\.\d+)?", tok) or tok.upper() in ("NULL", "TRUE", "FALSE"):
            self.i += 1
            return tok if tok == "?" or tok.startswith("'") else tok.lower()
        raise CqlSyntaxError(f"expected a bind marker or literal at {self.rest()!r}")

    def names(self) -> list[str]:
        self.expect("(")
        out = [self.ident()]
        while self.accept(","):
            out.append(self.ident())
        self.expect(")")
        return out

    def end(self) -> None:
        self.accept(";")
        if self.peek() is not None:
            raise CqlSyntaxError(f"unexpected {self.rest()!r}")

    # statements

    def statement(self) -> Statement:
        if self.accept("CREATE", "TABLE"):
            return self.create_table()
        if self.accept("SELECT"):
            return self.select()
        if self.accept("INSERT", "INTO"):
            return self.insert()
        if self.accept("UPDATE"):
            return self.update()
        if self.accept("DELETE"):
            return self.delete()
        raise CqlSyntaxError(f"not in Parley's CQL subset: {self.rest()!r}")

    def type_(self) -> str:
        name = self.ident()
        if self.accept("<"):
            args = [self.type_()]
            while self.accept(","):
                args.append(self.type_())
            self.expect(">")
            return f"{name}<{', '.join(args)}>"
        return name

    def create_table(self) -> CreateTable:
        if_not_exists = self.accept("IF", "NOT", "EXISTS")
        table = self.table()
        self.expect("(")
        columns: dict[str, str] = {}
        pk: list[str] = []
        clustering: list[str] = []
        while True:
            if self.accept("PRIMARY", "KEY"):
                if pk:
                    raise CqlSyntaxError("two primary keys")
                self.expect("(")
                pk = self.names() if self.peek() == "(" else [self.ident()]
                while self.accept(","):
                    clustering.append(self.ident())
                self.expect(")")
            else:
                name = self.ident()
                if name in columns:
                    raise CqlSyntaxError(f"column {name} defined twice")
                columns[name] = self.type_()
                if self.accept("PRIMARY", "KEY"):
                    if pk:
                        raise CqlSyntaxError("two primary keys")
                    pk = [name]
            if not self.accept(","):
                break
        self.expect(")")
        order: dict[str, str] = {}
        options: dict[str, str] = {}
        if self.accept("WITH"):
            while True:
                if self.accept("CLUSTERING", "ORDER", "BY"):
                    self.expect("(")
                    while True:
                        col = self.ident()
                        direction = (self.peek() or "").upper()
                        if direction not in ("ASC", "DESC"):
                            raise CqlSyntaxError(f"expected ASC or DESC at {self.rest()!r}")
                        self.i += 1
                        order[col] = direction
                        if not self.accept(","):
                            break
                    self.expect(")")
                else:
                    key = self.ident()
                    self.expect("=")
                    if self.accept("{"):
                        depth, start = 1, self.i
                        while depth:
                            tok = self.peek()
                            if tok is None:
                                raise CqlSyntaxError("unclosed map")
                            depth += {"{": 1, "}": -1}.get(tok, 0)
                            self.i += 1
                        options[key] = "{" + " ".join(self.toks[start:self.i])
                    else:
                        options[key] = self.value()
                if not self.accept("AND"):
                    break
        self.end()
        if not pk:
            raise CqlSyntaxError(f"table {table} has no primary key")
        return CreateTable(table, columns, pk, clustering, order, options, if_not_exists)

    def relations(self) -> list[Relation]:
        out = []
        while True:
            col = self.ident()
            op = (self.peek() or "").upper()
            if op not in REL_OPS:
                raise CqlSyntaxError(f"expected a relation at {self.rest()!r}")
            self.i += 1
            out.append(Relation(col, op, self.value()))
            if not self.accept("AND"):
                return out

    def using(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.accept("USING"):
            while True:
                kind = (self.peek() or "").upper()
                if kind not in ("TTL", "TIMESTAMP") or kind in out:
                    raise CqlSyntaxError(f"expected TTL or TIMESTAMP at {self.rest()!r}")
                self.i += 1
                out[kind] = self.value()
                if not self.accept("AND"):
                    break
        return out

    def conditions(self) -> tuple[bool, list[Condition]]:
        if not self.accept("IF"):
            return False, []
        if self.accept("EXISTS"):
            return True, []
        out = []
        while True:
            col = self.ident()
            op = (self.peek() or "").upper()
            if op not in ("=", "!=", *RANGE_OPS):
                raise CqlSyntaxError(f"expected a condition at {self.rest()!r}")
            self.i += 1
            out.append(Condition(col, op, self.value()))
            if not self.accept("AND"):
                return False, out

    def select(self) -> Select:
        cols = [self.ident()]
        while self.accept(","):
            cols.append(self.ident())
        self.expect("FROM")
        table = self.table()
        where = self.relations() if self.accept("WHERE") else []
        order: list[tuple[str, str]] = []
        if self.accept("ORDER", "BY"):
            while True:
                col = self.ident()
                direction = "ASC"
                if (self.peek() or "").upper() in ("ASC", "DESC"):
                    direction = (self.peek() or "").upper()
                    self.i += 1
                order.append((col, direction))
                if not self.accept(","):
                    break
        limit = self.value() if self.accept("LIMIT") else None
        if self.at("ALLOW", "FILTERING"):
            raise CqlSyntaxError("ALLOW FILTERING is not allowed in Parley")
        self.end()
        return Select(table, cols, where, order, limit)

    def insert(self) -> Insert:
        table = self.table()
        cols = self.names()
        self.expect("VALUES")
        self.expect("(")
        values = [self.value()]
        while self.accept(","):
            values.append(self.value())
        self.expect(")")
        if_not_exists = self.accept("IF", "NOT", "EXISTS")
        using = self.using()
        self.end()
        return Insert(table, cols, values, if_not_exists, using)

    def update(self) -> Update:
        table = self.table()
        using = self.using()
        self.expect("SET")
        assignments = []
        while True:
            col = self.ident()
            self.expect("=")
            assignments.append((col, self.value()))
            if not self.accept(","):
                break
        self.expect("WHERE")
        where = self.relations()
        if_exists, conds = self.conditions()
        self.end()
        return Update(table, using, assignments, where, if_exists, conds)

    def delete(self) -> Delete:
        cols: list[str] = []
        if not self.at("FROM"):
            cols.append(self.ident())
            while self.accept(","):
                cols.append(self.ident())
        self.expect("FROM")
        table = self.table()
        using = self.using()
        self.expect("WHERE")
        where = self.relations()
        if_exists, conds = self.conditions()
        self.end()
        return Delete(table, cols, using, where, if_exists, conds)


def parse(text: str) -> Statement:
    return _Parser(text).statement()


def bind_count(stmt: Statement) -> int:
    """How many `?` a statement binds, in order (for the checker and the model)."""
    vals: list[str] = []
    if isinstance(stmt, Select):
        vals = [r.value for r in stmt.where] + ([stmt.limit] if stmt.limit else [])
    elif isinstance(stmt, Insert):
        vals = stmt.values + list(stmt.using.values())
    elif isinstance(stmt, Update):
        vals = list(stmt.using.values()) + [v for _, v in stmt.assignments] + [r.value for r in stmt.where] \
            + [c.value for c in stmt.conditions]
    elif isinstance(stmt, Delete):
        vals = list(stmt.using.values()) + [r.value for r in stmt.where] + [c.value for c in stmt.conditions]
    return sum(v == "?" for v in vals)
