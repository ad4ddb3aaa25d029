"""The SQLite store's keyed reads search indexes: none may scan a table that grows with traffic."""

from __future__ import annotations

import sqlite3

import pytest

from parley.adapters.sqlite.messages import idem_lookup_sql, message_lookup_sql
from parley.adapters.sqlite.migrations import SCHEMA


@pytest.mark.parametrize("sql", [idem_lookup_sql(3), message_lookup_sql(3)], ids=["idempotency", "messages"])
def test_keyed_lookups_search_an_index(sql):
    conn = sqlite3.connect(":memory:")
    conn.executescript(SCHEMA)
    plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, ["x"] * sql.count("?"))]
    assert any(step.startswith("SEARCH m USING") for step in plan), plan
    assert not any(step.startswith("SCAN m") or step.startswith("SCAN messages") for step in plan), plan
    conn.close()
