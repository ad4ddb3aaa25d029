"""The SQLite schema upgrades in place: a data dir of an older build keeps its data."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgspec
import pytest

from parley.adapters.sqlite.migrations import SCHEMA_VERSION
from parley.adapters.sqlite.store import SqliteStore
from parley.records import AttachmentRow, AuditEntry, AuditQuery, EventRecord, Needs, ReportQuery

#: The conversation tables as builds with schema 1 and 2 created them.
V2_CONVS = """
CREATE TABLE convs (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, title TEXT, visibility TEXT NOT NULL,
    password_hash TEXT, history TEXT NOT NULL, owner TEXT NOT NULL, created_at INTEGER NOT NULL,
    last_seq INTEGER NOT NULL DEFAULT 0);
CREATE TABLE members (
    conv TEXT NOT NULL, user TEXT NOT NULL, role TEXT NOT NULL, visible_from INTEGER NOT NULL,
    read_seq INTEGER NOT NULL, joined_at INTEGER NOT NULL,
    PRIMARY KEY (conv, user)) WITHOUT ROWID;
"""
#: The whole schema of the first build (schema 1).
V1_SCHEMA = V2_CONVS + """
CREATE TABLE users (
    id TEXT PRIMARY KEY, username TEXT NOT NULL UNIQUE, password_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL);
CREATE INDEX members_by_user ON members (user, conv);
CREATE TABLE messages (
    conv TEXT NOT NULL, seq INTEGER NOT NULL, sender TEXT NOT NULL, ts INTEGER NOT NULL,
    cmid TEXT NOT NULL, text TEXT, reply_to INTEGER, attachments BLOB, mentions BLOB,
    edited_at INTEGER, deleted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (conv, seq)) WITHOUT ROWID;
CREATE UNIQUE INDEX messages_idempotency ON messages (conv, sender, cmid);
CREATE TABLE reactions (
    conv TEXT NOT NULL, seq INTEGER NOT NULL, emoji TEXT NOT NULL, user TEXT NOT NULL,
    PRIMARY KEY (conv, seq, emoji, user)) WITHOUT ROWID;
CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, record BLOB NOT NULL);
CREATE TABLE relay (name TEXT PRIMARY KEY, checkpoint INTEGER NOT NULL);
PRAGMA user_version=1;
"""
V1_OUTBOX = V2_CONVS + """
CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, record BLOB NOT NULL);
CREATE TABLE relay (name TEXT PRIMARY KEY, checkpoint INTEGER NOT NULL);
PRAGMA user_version=1;
"""


async def test_a_version_1_outbox_becomes_shard_0_with_its_checkpoint(tmp_path: Path):
    path = tmp_path / "parley.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(V1_OUTBOX)
        for n in range(3):
            conn.execute("INSERT INTO outbox (record) VALUES (?)",
                         (msgspec.msgpack.encode(EventRecord("c1", b"%d" % n)),))
        conn.execute("INSERT INTO relay VALUES ('outbox', 1)")
    store = SqliteStore(path, synchronous="NORMAL")
    await store.open()
    try:
        assert await store.relay_checkpoint(0) == 1
        assert [(i, r.frame) for i, r in await store.outbox_after(0, 1, 10)] == [(2, b"1"), (3, b"2")]
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


def schema_of(path: Path) -> dict[tuple[str, str], list[tuple[object, ...]]]:
    """Every table's columns (name, type, not null, default, key) and every index's columns, in
    order; triggers by name."""
    with sqlite3.connect(path) as conn:
        found = {}
        for kind, name in conn.execute("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"):
            info = {"table": "table_xinfo", "index": "index_xinfo"}.get(kind)
            found[(kind, name)] = list(conn.execute(f"PRAGMA {info}({name})")) if info else []
    return found


async def test_a_version_1_database_upgrades_to_the_schema_of_a_new_one(tmp_path: Path):
    with sqlite3.connect(tmp_path / "old.db") as conn:
        conn.executescript(V1_SCHEMA)
    for name in ("old.db", "new.db"):
        store = SqliteStore(tmp_path / name, synchronous="NORMAL")
        await store.open()
        await store.close()
    assert schema_of(tmp_path / "old.db") == schema_of(tmp_path / "new.db")


async def test_a_database_of_a_newer_build_is_refused_untouched(tmp_path: Path):
    path = tmp_path / "parley.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(f"CREATE TABLE future (x); PRAGMA user_version={SCHEMA_VERSION + 1};")
    store = SqliteStore(path, synchronous="NORMAL")
    with pytest.raises(RuntimeError, match="newer than this build"):
        await store.open()
    await store.close()
    assert schema_of(path) == {("table", "future"): [(0, "x", "", 0, None, 0, 0)]}


async def test_the_audit_log_refuses_updates_and_deletes(tmp_path: Path):
    store = SqliteStore(tmp_path / "parley.db", synchronous="NORMAL")
    await store.open()
    try:
        await store.append_audit([AuditEntry(at=1, actor="mod", action="user.suspend", target="u1")])
        assert len(await store.audit_entries(AuditQuery())) == 1
    finally:
        await store.close()
    with sqlite3.connect(tmp_path / "parley.db") as conn:
        for sql in ("UPDATE audit SET actor = 'someone else'", "DELETE FROM audit"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute(sql)


async def test_a_version_2_store_gains_the_attachments_table(tmp_path: Path):
    path = tmp_path / "parley.db"
    with sqlite3.connect(path) as conn:  # what a version 2 build left behind (the parts that matter)
        conn.executescript(V2_CONVS + "PRAGMA user_version=2;")
    store = SqliteStore(path, synchronous="NORMAL")
    await store.open()
    try:
        row = AttachmentRow(id="a1", conv="c1", uploader="u1", name="n", mime="text/plain", size=1, created_at=1)
        await store.put_attachment(row)
        assert await store.attachment("a1") == row
    finally:
        await store.close()


async def test_a_version_2_or_3_conversation_gains_default_moderation_settings(tmp_path: Path):
    path = tmp_path / "parley.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(V2_CONVS + "PRAGMA user_version=2;")
        conn.execute("INSERT INTO convs VALUES ('c1', 'group', 't', 'public', NULL, 'joined', 'a', 1, 7)")
        conn.execute("INSERT INTO members VALUES ('c1', 'a', 'owner', 1, 7, 1)")
    store = SqliteStore(path, synchronous="NORMAL")
    await store.open()
    try:
        state = (await store.prefetch(Needs(convs={"c1"}))).convs["c1"]
        assert (state.row.last_seq, state.row.slow_mode_s, state.row.read_only, state.row.allow_guests) == (7, 0, False, False)
        assert (state.row.permissions, state.row.pinned, state.mutes, state.bans) == ({}, [], {}, {})
        assert await store.block_peers("a") == set()
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


V2_USERS = """
CREATE TABLE users (id TEXT PRIMARY KEY, username TEXT NOT NULL UNIQUE, password_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL);
INSERT INTO users VALUES ('u1', 'alice', 'hash', 5);
PRAGMA user_version=2;
"""


async def test_a_version_2_users_table_gains_roles_status_and_suspension(tmp_path: Path):
    path = tmp_path / "parley.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(V2_USERS)
    store = SqliteStore(path, synchronous="NORMAL")
    await store.open()
    try:
        account = await store.account("u1")
        assert account is not None
        assert (account.username, account.role, account.status, account.suspended_until, account.guest,
                account.token_gen) == ("alice", None, "active", None, False, 0)
        assert await store.user_by_name("alice") == ("u1", "hash")
        assert await store.instance_policy() == {} and await store.reports(ReportQuery()) == []
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


async def test_a_version_6_user_gains_a_profile_and_is_found_in_the_directory_by_username(tmp_path: Path):
    path = tmp_path / "parley.db"
    with sqlite3.connect(path) as conn:  # a version 2 users table, as a version 6 build left it behind
        conn.executescript(V2_USERS + "PRAGMA user_version=2;")
    store = SqliteStore(path, synchronous="NORMAL")
    await store.open()
    await store.close()
    with sqlite3.connect(path) as conn:  # back to version 6: the profile columns and terms come with 7
        conn.executescript("ALTER TABLE users DROP COLUMN display_name; ALTER TABLE users DROP COLUMN avatar;"
                           "ALTER TABLE users DROP COLUMN status_text; ALTER TABLE users DROP COLUMN discoverable;"
                           "DROP TABLE user_search_terms; PRAGMA user_version=6;")
    store = SqliteStore(path, synchronous="NORMAL")
    await store.open()
    try:
        alice = await store.account("u1")
        assert alice is not None and (alice.display_name, alice.discoverable) == (None, True)
        assert [a.id for a in await store.search_directory("al", 10)] == ["u1"]
    finally:
        await store.close()


async def test_replacing_a_users_search_terms_reads_an_index_not_every_users_terms(tmp_path: Path):
    path = tmp_path / "p.db"
    store = SqliteStore(path, synchronous="NORMAL")
    await store.open()
    await store.close()
    with sqlite3.connect(path) as conn:
        plan = conn.execute("EXPLAIN QUERY PLAN DELETE FROM user_search_terms WHERE user = ?", ("u1",)).fetchall()
    assert "user_search_terms_by_user" in " ".join(str(row[-1]) for row in plan)
