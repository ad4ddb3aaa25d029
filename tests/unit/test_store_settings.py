"""Choosing the store from the environment, and `parley migrate` on the in-memory model."""

from __future__ import annotations

import pytest

from parley.adapters.cassandra.migrate import MigrationError, checksum, migrate
from tests.cassandra_model import ModelSession
from parley.config import Settings, parse_hosts
from parley.app.stores import cluster_settings


def test_cassandra_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PARLEY_STORE", "cassandra")
    monkeypatch.setenv("PARLEY_CASSANDRA_HOSTS", "db1:9043, db2:9043")
    monkeypatch.setenv("PARLEY_CASSANDRA_KEYSPACE", "chat")
    monkeypatch.setenv("PARLEY_CASSANDRA_DC", "eu-west")
    monkeypatch.setenv("PARLEY_CASSANDRA_RF", "5")
    cfg = cluster_settings(Settings.from_env())
    assert (cfg.hosts, cfg.port, cfg.keyspace, cfg.local_dc) == (("db1", "db2"), 9043, "chat", "eu-west")
    assert cfg.replication == "{'class': 'NetworkTopologyStrategy', 'eu-west': 5}"


def test_bad_store_settings_are_refused(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PARLEY_STORE", "mongo")
    with pytest.raises(ValueError):
        Settings.from_env()
    with pytest.raises(ValueError):
        parse_hosts("a:1,b:2")
    with pytest.raises(ValueError):  # a keyspace name goes into DDL: only plain names
        cluster_settings(Settings(store="cassandra", cassandra_hosts=("h",), cassandra_keyspace="x; DROP"))


async def test_migrations_apply_once_and_an_edited_migration_is_refused():
    session = ModelSession()
    files = [(1, "0001_a.cql", "CREATE TABLE IF NOT EXISTS a (k int PRIMARY KEY, v text);")]
    assert await migrate(session, files=files) == [1]
    assert "a" in session.tables
    assert await migrate(session, files=files) == []
    row = (await session.execute("migration_applied", [1])).rows
    assert row == [("0001_a.cql", checksum(files[0][2]))]
    with pytest.raises(MigrationError):
        await migrate(session, files=[(1, "0001_a.cql", files[0][2] + "\n-- edited")])
