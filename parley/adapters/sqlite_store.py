"""The embedded message store: one SQLite file in WAL mode.

Writes go through one writer thread, one transaction per chat_core batch (group commit: one
fsync acknowledges many commands). Reads run on a small pool of reader threads, each with its
own connection; WAL lets them read while the writer commits. The primary key (conv, seq) and
the unique (conv, sender, cmid) index make a reused seq or a duplicated send impossible to
store, whatever the code above does.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from itertools import groupby
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from parley.errors import Conflict, Forbidden, Unavailable
from parley.frames import Message
from parley.records import (
    Account, AccountPatch, AccountQuery, AttachmentRow, AuditEntry, AuditQuery, ConvRow, ConvState, CreateConv,
    DropBlock, DropMember, DropSanction, EventRecord, Facts, InsertMessage, Invite, MemberRow, Mutation, Needs,
    PutAudit, PutBlock, PutMember, PutOutbox, PutSanction, Report, ReportQuery, SanctionRow, SetConvHead,
    SetConvOwner, SetReaction, SetReadSeq, UpdateConv, UpdateMessage,
)

T = TypeVar("T")
#: 3: attachments; 4: moderation (conv settings, sanctions, blocks); 5: account roles, status,
#: suspension; invites, reports, instance policy; 6: conversations that admit guests
SCHEMA_VERSION = 6
_CHUNK = 400  # bound on `?` parameters per statement

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY, username TEXT NOT NULL UNIQUE, password_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL, role TEXT, status TEXT NOT NULL DEFAULT 'active',
    suspended_until INTEGER, suspend_reason TEXT, guest INTEGER NOT NULL DEFAULT 0,
    token_gen INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS users_by_status ON users (status, username);
CREATE TABLE IF NOT EXISTS invites (
    code TEXT PRIMARY KEY, created_by TEXT NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER,
    used_by TEXT, used_at INTEGER);
CREATE TABLE IF NOT EXISTS instance_policy (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS reports (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, reporter TEXT NOT NULL, kind TEXT NOT NULL,
    target_user TEXT NOT NULL, conv TEXT, seq INTEGER, reason TEXT NOT NULL, excerpt TEXT,
    status TEXT NOT NULL, claimed_by TEXT, claimed_at INTEGER, resolved_by TEXT, resolved_at INTEGER,
    resolution TEXT, note TEXT);
CREATE INDEX IF NOT EXISTS reports_by_status ON reports (status, id);
CREATE TABLE IF NOT EXISTS convs (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, title TEXT, visibility TEXT NOT NULL,
    password_hash TEXT, history TEXT NOT NULL, owner TEXT NOT NULL, created_at INTEGER NOT NULL,
    last_seq INTEGER NOT NULL DEFAULT 0, slow_mode_s INTEGER NOT NULL DEFAULT 0,
    read_only INTEGER NOT NULL DEFAULT 0, permissions BLOB, pinned BLOB, allow_guests INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS members (
    conv TEXT NOT NULL, user TEXT NOT NULL, role TEXT NOT NULL, visible_from INTEGER NOT NULL,
    read_seq INTEGER NOT NULL, joined_at INTEGER NOT NULL,
    PRIMARY KEY (conv, user)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS members_by_user ON members (user, conv);
CREATE TABLE IF NOT EXISTS messages (
    conv TEXT NOT NULL, seq INTEGER NOT NULL, sender TEXT NOT NULL, ts INTEGER NOT NULL,
    cmid TEXT NOT NULL, text TEXT, reply_to INTEGER, attachments BLOB, mentions BLOB,
    edited_at INTEGER, deleted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (conv, seq)) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS messages_idempotency ON messages (conv, sender, cmid);
CREATE TABLE IF NOT EXISTS reactions (
    conv TEXT NOT NULL, seq INTEGER NOT NULL, emoji TEXT NOT NULL, user TEXT NOT NULL,
    PRIMARY KEY (conv, seq, emoji, user)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, record BLOB NOT NULL, shard INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS outbox_by_shard ON outbox (shard, id);
CREATE TABLE IF NOT EXISTS relay (name TEXT PRIMARY KEY, checkpoint INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    target TEXT NOT NULL, conv TEXT, reason TEXT, details BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS audit_by_actor ON audit (actor, id);
CREATE INDEX IF NOT EXISTS audit_by_target ON audit (target, id);
CREATE TABLE IF NOT EXISTS sanctions (
    conv TEXT NOT NULL, user TEXT NOT NULL, kind TEXT NOT NULL, until INTEGER NOT NULL, by TEXT NOT NULL,
    at INTEGER NOT NULL, reason TEXT,
    PRIMARY KEY (conv, user, kind)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blocks (
    blocker TEXT NOT NULL, blocked TEXT NOT NULL, at INTEGER NOT NULL,
    PRIMARY KEY (blocker, blocked)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS blocks_by_blocked ON blocks (blocked, blocker);
CREATE TRIGGER IF NOT EXISTS audit_append_only_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_append_only_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TABLE IF NOT EXISTS attachments (
    id TEXT PRIMARY KEY, conv TEXT NOT NULL, uploader TEXT NOT NULL, name TEXT NOT NULL,
    mime TEXT NOT NULL, size INTEGER NOT NULL, created_at INTEGER NOT NULL,
    uploaded INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
"""

#: Steps from each older schema version; SCHEMA then creates whatever is new.
MIGRATIONS: dict[int, list[str]] = {
    1: ["ALTER TABLE outbox ADD COLUMN shard INTEGER NOT NULL DEFAULT 0",
        "UPDATE relay SET name = 'outbox:0' WHERE name = 'outbox'"],
    2: [],  # 3 only adds the attachments table
    3: ["ALTER TABLE convs ADD COLUMN slow_mode_s INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE convs ADD COLUMN read_only INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE convs ADD COLUMN permissions BLOB",
        "ALTER TABLE convs ADD COLUMN pinned BLOB"],  # and the sanctions and blocks tables
    4: ["ALTER TABLE users ADD COLUMN role TEXT",
        "ALTER TABLE users ADD COLUMN status TEXT NOT NULL DEFAULT 'active'",
        "ALTER TABLE users ADD COLUMN suspended_until INTEGER",
        "ALTER TABLE users ADD COLUMN suspend_reason TEXT",
        "ALTER TABLE users ADD COLUMN guest INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE users ADD COLUMN token_gen INTEGER NOT NULL DEFAULT 0"],  # and invites, reports, policy
    5: ["ALTER TABLE convs ADD COLUMN allow_guests INTEGER NOT NULL DEFAULT 0"],
}

_ADD_COLUMN = re.compile(r"^ALTER TABLE (\w+) ADD COLUMN (\w+) ")


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """An explicit transaction: the connections autocommit (isolation_level=None), so `with conn`
    alone would commit each statement on its own."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _needed(conn: sqlite3.Connection, sql: str) -> bool:
    """An ADD COLUMN is skipped when its table is absent (SCHEMA creates it whole) or has it."""
    match = _ADD_COLUMN.match(sql)
    if match is None:
        return True
    table, column = match.groups()
    columns = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
    return bool(columns) and column not in columns


_MSG_COLS = "conv, seq, sender, ts, cmid, text, reply_to, attachments, mentions, edited_at, deleted"
_CONV_COLS = ("id, kind, title, visibility, password_hash, history, owner, created_at, last_seq, slow_mode_s, "
              "read_only, permissions, pinned, allow_guests")
_N_CONV = 14
_SANCTION_COLS = "conv, user, kind, until, by, at, reason"
_MEMBER_COLS = "conv, user, role, visible_from, read_seq, joined_at"
_ATTACHMENT_COLS = "id, conv, uploader, name, mime, size, created_at, uploaded"
_ACCOUNT_COLS = "id, username, created_at, role, status, suspended_until, suspend_reason, guest, token_gen"
_INVITE_COLS = "code, created_by, created_at, expires_at, used_by, used_at"
_REPORT_COLS = ("id, at, reporter, kind, target_user, conv, seq, reason, excerpt, status, claimed_by, claimed_at, "
                "resolved_by, resolved_at, resolution, note")
_ids = msgspec.json.Encoder()
_ids_decode = msgspec.json.Decoder(list[str])
_seqs_decode = msgspec.json.Decoder(list[int])
_perms_decode = msgspec.json.Decoder(dict[str, str])
_record_encode = msgspec.msgpack.Encoder().encode
_record_decode = msgspec.msgpack.Decoder(EventRecord).decode


def _message(row: Sequence[Any]) -> Message:
    return Message(
        conv=row[0], seq=row[1], sender=row[2], ts=row[3], cmid=row[4], text=row[5],
        reply_to=row[6], attachments=_ids_decode.decode(row[7]) if row[7] else [],
        mentions=_ids_decode.decode(row[8]) if row[8] else [], edited_at=row[9], deleted=bool(row[10]),
    )


def _conv(row: Sequence[Any]) -> ConvRow:
    return ConvRow(id=row[0], kind=row[1], title=row[2], visibility=row[3], password_hash=row[4],
                   history=row[5], owner=row[6], created_at=row[7], last_seq=row[8], slow_mode_s=row[9],
                   read_only=bool(row[10]), permissions=_perms_decode.decode(row[11]) if row[11] else {},
                   pinned=_seqs_decode.decode(row[12]) if row[12] else [], allow_guests=bool(row[13]))


def _conv_settings(r: ConvRow) -> tuple[Any, ...]:
    return (r.title, r.visibility, r.password_hash, r.history, r.slow_mode_s, int(r.read_only),
            _ids.encode(r.permissions) if r.permissions else None, _ids.encode(r.pinned) if r.pinned else None,
            int(r.allow_guests))


def _sanction(row: Sequence[Any]) -> SanctionRow:
    return SanctionRow(conv=row[0], user=row[1], kind=row[2], until=row[3], by=row[4], at=row[5], reason=row[6])


def blocks_lookup_sql(n: int) -> str:
    """Blocks either way within n pairs (a, b): 2n keys searched in the primary key."""
    keys = ",".join("(?,?),(?,?)" for _ in range(n))
    return (f"WITH k(blocker, blocked) AS (VALUES {keys}) SELECT b.blocker, b.blocked "
            "FROM k JOIN blocks b ON b.blocker = k.blocker AND b.blocked = k.blocked")


def _member(row: Sequence[Any]) -> MemberRow:
    return MemberRow(conv=row[0], user=row[1], role=row[2], visible_from=row[3], read_seq=row[4],
                     joined_at=row[5])


def _attachment(row: Sequence[Any]) -> AttachmentRow:
    return AttachmentRow(id=row[0], conv=row[1], uploader=row[2], name=row[3], mime=row[4], size=row[5],
                         created_at=row[6], uploaded=bool(row[7]))


def _account(row: Sequence[Any]) -> Account:
    return Account(id=row[0], username=row[1], created_at=row[2], role=row[3], status=row[4],
                   suspended_until=row[5], suspend_reason=row[6], guest=bool(row[7]), token_gen=row[8])


def _invite(row: Sequence[Any]) -> Invite:
    return Invite(code=row[0], created_by=row[1], created_at=row[2], expires_at=row[3], used_by=row[4],
                  used_at=row[5])


def _report(row: Sequence[Any]) -> Report:
    return Report(id=row[0], at=row[1], reporter=row[2], kind=row[3], target_user=row[4], conv=row[5],
                  seq=row[6], reason=row[7], excerpt=row[8], status=row[9], claimed_by=row[10],
                  claimed_at=row[11], resolved_by=row[12], resolved_at=row[13], resolution=row[14], note=row[15])


def _chunks(items: Sequence[T], size: int = _CHUNK) -> Iterable[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _marks(n: int) -> str:
    return ",".join("?" * n)


# Keyed lookups join a VALUES list: SQLite plans `(a, b) IN (VALUES ...)` as a scan of the
# whole table, but a join searches the index once per key.
def idem_lookup_sql(n: int) -> str:
    keys = ",".join("(?,?,?)" for _ in range(n))
    return (f"WITH k(conv, sender, cmid) AS (VALUES {keys}) SELECT m.conv, m.sender, m.cmid, m.seq, m.ts "
            "FROM k JOIN messages m ON m.conv = k.conv AND m.sender = k.sender AND m.cmid = k.cmid")


def message_lookup_sql(n: int) -> str:
    keys = ",".join("(?,?)" for _ in range(n))
    cols = ", ".join(f"m.{c.strip()}" for c in _MSG_COLS.split(","))
    return f"WITH k(conv, seq) AS (VALUES {keys}) SELECT {cols} FROM k JOIN messages m ON m.conv = k.conv AND m.seq = k.seq"


class SqliteStore:
    """Implements parley.ports.Store on one SQLite file."""

    def __init__(self, path: Path, synchronous: str = "FULL", readers: int = 2) -> None:
        if synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError(f"unsupported sqlite synchronous mode {synchronous!r}")
        self._path = path
        self._synchronous = synchronous
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="sqlite-reader")
        self._local = threading.local()
        self._wconn: sqlite3.Connection | None = None
        self._rconns: list[sqlite3.Connection] = []
        self._closed = False

    # ---- plumbing -------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute("PRAGMA busy_timeout=10000")
        return conn

    async def open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        await self._write(self._migrate)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"store schema {version} is newer than this build ({SCHEMA_VERSION})")
        steps = [sql for step in range(version or SCHEMA_VERSION, SCHEMA_VERSION) for sql in MIGRATIONS[step]
                 if _needed(conn, sql)]
        try:  # one transaction: a failed upgrade leaves the old schema as it was
            conn.executescript("BEGIN IMMEDIATE;" + "".join(f"{sql};" for sql in steps) + SCHEMA
                               + f"PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")
        except sqlite3.Error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _writer_conn(self) -> sqlite3.Connection:
        if self._wconn is None:
            self._wconn = self._connect()
        return self._wconn

    def _reader_conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
            self._rconns.append(conn)
        return conn

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, lambda: fn(self._writer_conn()))

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, lambda: fn(self._reader_conn()))

    async def ping(self) -> None:
        # On a reader thread, as the gateway's reads: it answers when they would. Unlike
        # `SELECT 1`, user_version takes a read transaction on the file (its header).
        try:
            await self._read(lambda conn: conn.execute("PRAGMA user_version").fetchone())
        except (sqlite3.Error, RuntimeError) as exc:  # RuntimeError: closed, its threads are gone
            raise Unavailable(f"store unreachable: {exc}", retry_after_ms=1000) from exc

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._writer.shutdown, True)
        await loop.run_in_executor(None, self._readers.shutdown, True)
        # The pools are idle now, so their connections can be closed from here.
        for conn in [self._wconn, *self._rconns]:
            if conn is not None:
                conn.close()
        self._wconn, self._rconns = None, []

    # ---- chat_core ------------------------------------------------------------------------

    async def prefetch(self, needs: Needs) -> Facts:
        return await self._write(lambda conn: self._prefetch(conn, needs))

    def _prefetch(self, conn: sqlite3.Connection, needs: Needs) -> Facts:
        facts = Facts()
        for part in _chunks(sorted(needs.convs)):
            for row in conn.execute(f"SELECT {_CONV_COLS} FROM convs WHERE id IN ({_marks(len(part))})", part):
                facts.convs[row[0]] = ConvState(_conv(row), {})
            for row in conn.execute(f"SELECT {_MEMBER_COLS} FROM members WHERE conv IN ({_marks(len(part))})", part):
                facts.convs[row[0]].members[row[1]] = _member(row)
            for row in conn.execute(f"SELECT {_SANCTION_COLS} FROM sanctions WHERE conv IN ({_marks(len(part))})", part):
                sanction = _sanction(row)
                state = facts.convs[sanction.conv]
                (state.mutes if sanction.kind == "mute" else state.bans)[sanction.user] = sanction
        # A direct conversation carries the blocks between its two members.
        pairs = {tuple(sorted(s.members)): s for s in facts.convs.values() if s.row.kind == "direct" and len(s.members) == 2}
        for ppart in _chunks(sorted(pairs), _CHUNK // 4):
            for blocker, blocked in conn.execute(blocks_lookup_sql(len(ppart)), [x for a, b in ppart for x in (a, b, b, a)]):
                pairs[tuple(sorted((blocker, blocked)))].blocks.add((blocker, blocked))
        wanted = sorted({tuple(sorted(p)) for p in needs.blocks})
        for bpart in _chunks(wanted, _CHUNK // 4):
            facts.blocks.update(conn.execute(blocks_lookup_sql(len(bpart)), [x for a, b in bpart for x in (a, b, b, a)]))
        for upart in _chunks(sorted(needs.users | needs.accounts)):
            for user, created_at in conn.execute(
                    f"SELECT id, created_at FROM users WHERE id IN ({_marks(len(upart))})", upart):
                facts.users.add(user)
                facts.created_at[user] = created_at
        for ipart in _chunks(sorted(needs.idem), _CHUNK // 3):
            for conv, sender, cmid, seq, ts in conn.execute(idem_lookup_sql(len(ipart)), [x for k in ipart for x in k]):
                facts.idem[(conv, sender, cmid)] = (seq, ts)
        for mpart in _chunks(sorted(needs.messages), _CHUNK // 2):
            for row in conn.execute(message_lookup_sql(len(mpart)), [x for k in mpart for x in k]):
                facts.messages[(row[0], row[1])] = _message(row)
        self._attach_reactions(conn, list(facts.messages.values()))
        for apart in _chunks(sorted(needs.attachments)):
            for row in conn.execute(
                    f"SELECT {_ATTACHMENT_COLS} FROM attachments WHERE id IN ({_marks(len(apart))})", apart):
                facts.attachments[row[0]] = _attachment(row)
        return facts

    async def apply(self, mutations: Sequence[Mutation]) -> list[int]:
        return await self._write(lambda conn: self._apply(conn, mutations))

    def _apply(self, conn: sqlite3.Connection, mutations: Sequence[Mutation]) -> list[int]:
        outbox = 0
        try:
            conn.execute("BEGIN IMMEDIATE")
            # Consecutive mutations of one kind go in one executemany; order across kinds is kept
            # (a send then an edit of it, a leave then a rejoin, in one batch).
            for kind, run in groupby(mutations, key=type):
                items = list(run)
                for sql, rows in _WRITES[kind](items):
                    conn.executemany(sql, rows)
                if kind is PutOutbox:
                    outbox += len(items)
            last = 0
            if outbox:
                (last,) = conn.execute("SELECT seq FROM sqlite_sequence WHERE name='outbox'").fetchone()
            conn.execute("COMMIT")
        except sqlite3.IntegrityError as exc:
            conn.execute("ROLLBACK")
            raise Conflict(f"store rejected the batch: {exc}") from exc
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise Unavailable(f"store write failed: {exc}", retry_after_ms=1000) from exc
        # One writer, one transaction: the batch's outbox ids are contiguous and end at `last`.
        return list(range(last - outbox + 1, last + 1))

    # ---- outbox relay ---------------------------------------------------------------------

    async def outbox_after(self, shard: int, after_id: int, limit: int) -> list[tuple[int, EventRecord]]:
        def run(conn: sqlite3.Connection) -> list[tuple[int, EventRecord]]:
            rows = conn.execute("SELECT id, record FROM outbox WHERE shard = ? AND id > ? ORDER BY id LIMIT ?",
                                (shard, after_id, limit))
            return [(i, _record_decode(rec)) for i, rec in rows]
        return await self._read(run)

    async def relay_checkpoint(self, shard: int) -> int:
        def run(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT checkpoint FROM relay WHERE name = ?", (f"outbox:{shard}",)).fetchone()
            return int(row[0]) if row else 0
        return await self._read(run)

    async def set_relay_checkpoint(self, shard: int, outbox_id: int) -> None:
        def run(conn: sqlite3.Connection) -> None:
            # A relay that lost its shard may still record what it relayed: the checkpoint only
            # moves forward, so it cannot undo the new owner's progress. Relayed rows are gone for
            # good: SQLite has no tombstones to fear.
            with conn:
                conn.execute("INSERT INTO relay (name, checkpoint) VALUES (?, ?) ON CONFLICT (name) "
                             "DO UPDATE SET checkpoint = max(checkpoint, excluded.checkpoint)",
                             (f"outbox:{shard}", outbox_id))
                conn.execute("DELETE FROM outbox WHERE shard = ? AND id <= ?", (shard, outbox_id))
        await self._write(run)

    # ---- audit log ------------------------------------------------------------------------

    async def append_audit(self, entries: Sequence[AuditEntry]) -> None:
        def run(conn: sqlite3.Connection) -> None:
            with conn:
                sql, rows = _audit_rows(entries)
                conn.executemany(sql, rows)
        await self._write(run)

    async def audit_entries(self, query: AuditQuery) -> list[AuditEntry]:
        def run(conn: sqlite3.Connection) -> list[AuditEntry]:
            conds: list[tuple[str, str | int | None]] = [
                ("actor = ?", query.actor), ("target = ?", query.target), ("action = ?", query.action),
                ("at >= ?", query.since), ("at < ?", query.until), ("id < ?", query.before_id)]
            where = [cond for cond, value in conds if value is not None]
            args = [value for _, value in conds if value is not None]
            sql = ("SELECT id, at, actor, action, target, conv, reason, details FROM audit"
                   + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id DESC LIMIT ?")
            return [AuditEntry(id=r[0], at=r[1], actor=r[2], action=r[3], target=r[4], conv=r[5], reason=r[6],
                               details=_details_decode(r[7]))
                    for r in conn.execute(sql, [*args, query.limit])]
        return await self._read(run)

    # ---- reads ----------------------------------------------------------------------------

    async def membership(self, conv: str, user: str) -> tuple[ConvRow, MemberRow | None] | None:
        def run(conn: sqlite3.Connection) -> tuple[ConvRow, MemberRow | None] | None:
            row = conn.execute(f"SELECT {_CONV_COLS} FROM convs WHERE id = ?", (conv,)).fetchone()
            if row is None:
                return None
            mrow = conn.execute(f"SELECT {_MEMBER_COLS} FROM members WHERE conv = ? AND user = ?",
                                (conv, user)).fetchone()
            return _conv(row), _member(mrow) if mrow else None
        return await self._read(run)

    async def conv_list(self, user: str) -> list[tuple[ConvRow, MemberRow, str | None]]:
        """The user's conversations with their membership and, for direct ones, the peer."""
        def run(conn: sqlite3.Connection) -> list[tuple[ConvRow, MemberRow, str | None]]:
            cols = ", ".join(f"c.{c.strip()}" for c in _CONV_COLS.split(","))
            mcols = ", ".join(f"m.{c.strip()}" for c in _MEMBER_COLS.split(","))
            rows = conn.execute(
                f"SELECT {cols}, {mcols}, p.user FROM members m JOIN convs c ON c.id = m.conv "
                f"LEFT JOIN members p ON c.kind = 'direct' AND p.conv = c.id AND p.user != m.user "
                f"WHERE m.user = ? ORDER BY c.created_at, c.id", (user,))
            n = _N_CONV
            return [(_conv(r[:n]), _member(r[n:n + 6]), r[n + 6]) for r in rows]
        return await self._read(run)

    async def message_pages(self, pages: Sequence[tuple[str, int, int, int, bool]]) -> list[list[Message]]:
        """Per (conv, lo, hi, limit, newest): messages with lo <= seq < hi, ascending; the
        `limit` highest when `newest`, else the lowest. One thread hop for many conversations."""
        def run(conn: sqlite3.Connection) -> list[list[Message]]:
            out = []
            for conv, lo, hi, limit, newest in pages:
                order = "DESC" if newest else "ASC"
                rows = conn.execute(
                    f"SELECT {_MSG_COLS} FROM messages WHERE conv = ? AND seq >= ? AND seq < ? "
                    f"ORDER BY seq {order} LIMIT ?", (conv, lo, hi, limit)).fetchall()
                msgs = [_message(r) for r in (reversed(rows) if newest else rows)]
                self._attach_reactions(conn, msgs)
                out.append(msgs)
            return out
        return await self._read(run)

    @staticmethod
    def _attach_reactions(conn: sqlite3.Connection, msgs: Sequence[Message]) -> None:
        by_conv: dict[str, dict[int, Message]] = {}
        for m in msgs:
            by_conv.setdefault(m.conv, {})[m.seq] = m
        for conv, by_seq in by_conv.items():
            rows = conn.execute(
                "SELECT seq, emoji, user FROM reactions WHERE conv = ? AND seq BETWEEN ? AND ? "
                "ORDER BY seq, emoji, user", (conv, min(by_seq), max(by_seq)))
            for seq, emoji, user in rows:
                msg = by_seq.get(seq)
                if msg is not None:
                    msg.reactions.setdefault(emoji, []).append(user)

    async def block_peers(self, user: str) -> set[str]:
        def run(conn: sqlite3.Connection) -> set[str]:
            return {r[0] for r in conn.execute(
                "SELECT blocked FROM blocks WHERE blocker = ? UNION SELECT blocker FROM blocks WHERE blocked = ?",
                (user, user))}
        return await self._read(run)

    async def member_ids(self, conv: str) -> list[str]:
        def run(conn: sqlite3.Connection) -> list[str]:
            return [r[0] for r in conn.execute("SELECT user FROM members WHERE conv = ?", (conv,))]
        return await self._read(run)

    # ---- attachments ----------------------------------------------------------------------

    async def put_attachment(self, row: AttachmentRow) -> None:
        def run(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute(f"INSERT OR REPLACE INTO attachments ({_ATTACHMENT_COLS}) VALUES ({_marks(8)})",
                             (row.id, row.conv, row.uploader, row.name, row.mime, row.size, row.created_at,
                              int(row.uploaded)))
        await self._write(run)

    async def attachment(self, attachment_id: str) -> AttachmentRow | None:
        def run(conn: sqlite3.Connection) -> AttachmentRow | None:
            row = conn.execute(f"SELECT {_ATTACHMENT_COLS} FROM attachments WHERE id = ?",
                               (attachment_id,)).fetchone()
            return _attachment(row) if row else None
        return await self._read(run)

    # ---- admin reads ----------------------------------------------------------------------

    async def conv_members(self, conv: str) -> tuple[ConvRow, list[MemberRow]] | None:
        def run(conn: sqlite3.Connection) -> tuple[ConvRow, list[MemberRow]] | None:
            row = conn.execute(f"SELECT {_CONV_COLS} FROM convs WHERE id = ?", (conv,)).fetchone()
            if row is None:
                return None
            members = conn.execute(f"SELECT {_MEMBER_COLS} FROM members WHERE conv = ? ORDER BY joined_at, user",
                                   (conv,))
            return _conv(row), [_member(m) for m in members]
        return await self._read(run)

    async def sent_messages(self, user: str, conv: str, after_seq: int, limit: int) -> list[Message]:
        def run(conn: sqlite3.Connection) -> list[Message]:
            # (conv, sender) is the prefix of the idempotency index: no scan of the conversation.
            rows = conn.execute(f"SELECT {_MSG_COLS} FROM messages WHERE conv = ? AND sender = ? AND seq > ? "
                                "ORDER BY seq LIMIT ?", (conv, user, after_seq, limit)).fetchall()
            msgs = [_message(r) for r in rows]
            self._attach_reactions(conn, msgs)
            return msgs
        return await self._read(run)

    # ---- accounts -------------------------------------------------------------------------

    async def create_user(self, user_id: str, username: str, password_hash: str, created_at: int, *,
                          status: str = "active", guest: bool = False, invite: str | None = None) -> None:
        def run(conn: sqlite3.Connection) -> None:
            try:
                with _transaction(conn):  # the code is spent only if the account is stored
                    if invite is not None:
                        used = conn.execute(
                            "UPDATE invites SET used_by = ?, used_at = ? WHERE code = ? AND used_by IS NULL "
                            "AND (expires_at IS NULL OR expires_at > ?)", (user_id, created_at, invite, created_at))
                        if used.rowcount != 1:
                            raise Forbidden("the invite code is unknown, used or expired")
                    conn.execute("INSERT INTO users (id, username, password_hash, created_at, status, guest) "
                                 "VALUES (?,?,?,?,?,?)",
                                 (user_id, username, password_hash, created_at, status, int(guest)))
            except sqlite3.IntegrityError:
                raise Conflict("username is taken") from None
        await self._write(run)

    async def user_by_name(self, username: str) -> tuple[str, str] | None:
        def run(conn: sqlite3.Connection) -> tuple[str, str] | None:
            row = conn.execute("SELECT id, password_hash FROM users WHERE username = ?", (username,)).fetchone()
            return (row[0], row[1]) if row else None
        return await self._read(run)

    async def account(self, user_id: str) -> Account | None:
        def run(conn: sqlite3.Connection) -> Account | None:
            row = conn.execute(f"SELECT {_ACCOUNT_COLS} FROM users WHERE id = ?", (user_id,)).fetchone()
            return _account(row) if row else None
        return await self._read(run)

    async def account_by_name(self, username: str) -> Account | None:
        def run(conn: sqlite3.Connection) -> Account | None:
            row = conn.execute(f"SELECT {_ACCOUNT_COLS} FROM users WHERE username = ?", (username,)).fetchone()
            return _account(row) if row else None
        return await self._read(run)

    async def update_account(self, user_id: str, patch: AccountPatch) -> Account | None:
        def run(conn: sqlite3.Connection) -> Account | None:
            sets: list[str] = []
            args: list[Any] = []
            for name in ("username", "role", "status", "suspended_until", "suspend_reason", "password_hash"):
                value = getattr(patch, name)
                if value is not msgspec.UNSET:
                    sets.append(f"{name} = ?")
                    args.append(value)
            if patch.cut_sessions:
                sets.append("token_gen = token_gen + 1")
            try:
                with conn:
                    if sets:
                        conn.execute(f"UPDATE users SET {', '.join(sets)} WHERE id = ?", [*args, user_id])
                    row = conn.execute(f"SELECT {_ACCOUNT_COLS} FROM users WHERE id = ?", (user_id,)).fetchone()
            except sqlite3.IntegrityError:
                raise Conflict("username is taken") from None
            return _account(row) if row else None
        return await self._write(run)

    async def search_accounts(self, query: AccountQuery) -> list[Account]:
        def run(conn: sqlite3.Connection) -> list[Account]:
            conds: list[str] = []
            args: list[Any] = []
            if query.prefix:
                escaped = query.prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                conds.append("(username LIKE ? ESCAPE '\\' OR id = ?)")
                args += [escaped + "%", query.prefix]
            for cond, value in (("status = ?", query.status), ("role = ?", query.role),
                                ("username > ?", query.after)):
                if value is not None:
                    conds.append(cond)
                    args.append(value)
            if query.guest is not None:
                conds.append("guest = ?")
                args.append(int(query.guest))
            sql = (f"SELECT {_ACCOUNT_COLS} FROM users" + (" WHERE " + " AND ".join(conds) if conds else "")
                   + " ORDER BY username LIMIT ?")
            return [_account(r) for r in conn.execute(sql, [*args, query.limit])]
        return await self._read(run)

    # ---- instance policy ------------------------------------------------------------------

    async def instance_policy(self) -> dict[str, Any]:
        def run(conn: sqlite3.Connection) -> dict[str, Any]:
            return {k: _json_decode(v) for k, v in conn.execute("SELECT key, value FROM instance_policy")}
        return await self._read(run)

    async def set_instance_policy(self, values: Mapping[str, Any]) -> None:
        def run(conn: sqlite3.Connection) -> None:
            with conn:
                conn.executemany("INSERT INTO instance_policy (key, value) VALUES (?, ?) "
                                 "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                                 [(k, _json_encode(v)) for k, v in values.items()])
        await self._write(run)

    # ---- invites --------------------------------------------------------------------------

    async def create_invite(self, invite: Invite) -> None:
        def run(conn: sqlite3.Connection) -> None:
            try:
                with conn:
                    conn.execute(f"INSERT INTO invites ({_INVITE_COLS}) VALUES ({_marks(6)})",
                                 (invite.code, invite.created_by, invite.created_at, invite.expires_at,
                                  invite.used_by, invite.used_at))
            except sqlite3.IntegrityError:
                raise Conflict("invite code already exists") from None
        await self._write(run)

    async def invites(self, include_used: bool, limit: int) -> list[Invite]:
        def run(conn: sqlite3.Connection) -> list[Invite]:
            where = "" if include_used else " WHERE used_by IS NULL"
            return [_invite(r) for r in conn.execute(
                f"SELECT {_INVITE_COLS} FROM invites{where} ORDER BY created_at DESC, code LIMIT ?", (limit,))]
        return await self._read(run)

    # ---- reports --------------------------------------------------------------------------

    async def add_report(self, report: Report) -> int:
        def run(conn: sqlite3.Connection) -> int:
            cols = _REPORT_COLS.split(", ")[1:]
            with conn:
                cur = conn.execute(f"INSERT INTO reports ({', '.join(cols)}) VALUES ({_marks(len(cols))})",
                                   [getattr(report, c) for c in cols])
            return int(cur.lastrowid or 0)
        return await self._write(run)

    async def report(self, report_id: int) -> Report | None:
        def run(conn: sqlite3.Connection) -> Report | None:
            row = conn.execute(f"SELECT {_REPORT_COLS} FROM reports WHERE id = ?", (report_id,)).fetchone()
            return _report(row) if row else None
        return await self._read(run)

    async def reports(self, query: ReportQuery) -> list[Report]:
        def run(conn: sqlite3.Connection) -> list[Report]:
            conds: list[tuple[str, str | int | None]] = [
                ("status = ?", query.status), ("claimed_by = ?", query.claimed_by),
                ("target_user = ?", query.target_user), ("id < ?", query.before_id)]
            where = [cond for cond, value in conds if value is not None]
            args = [value for _, value in conds if value is not None]
            sql = (f"SELECT {_REPORT_COLS} FROM reports" + (" WHERE " + " AND ".join(where) if where else "")
                   + " ORDER BY id DESC LIMIT ?")
            return [_report(r) for r in conn.execute(sql, [*args, query.limit])]
        return await self._read(run)

    async def claim_report(self, report_id: int, moderator: str, at: int) -> Report | None:
        def run(conn: sqlite3.Connection) -> Report | None:
            with conn:
                cur = conn.execute(
                    "UPDATE reports SET status = 'claimed', claimed_by = ?, claimed_at = ? WHERE id = ? "
                    "AND (status = 'open' OR (status = 'claimed' AND claimed_by = ?))",
                    (moderator, at, report_id, moderator))
                if cur.rowcount != 1:
                    return None
                return _report(conn.execute(f"SELECT {_REPORT_COLS} FROM reports WHERE id = ?",
                                            (report_id,)).fetchone())
        return await self._write(run)

    async def resolve_report(self, report_id: int, moderator: str, resolution: str, note: str | None,
                             at: int) -> Report | None:
        def run(conn: sqlite3.Connection) -> Report | None:
            with conn:
                cur = conn.execute(
                    "UPDATE reports SET status = 'resolved', resolved_by = ?, resolved_at = ?, resolution = ?, "
                    "note = ? WHERE id = ? AND status != 'resolved'", (moderator, at, resolution, note, report_id))
                if cur.rowcount != 1:
                    return None
                return _report(conn.execute(f"SELECT {_REPORT_COLS} FROM reports WHERE id = ?",
                                            (report_id,)).fetchone())
        return await self._write(run)


_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.Decoder().decode
_details_encode = msgspec.json.Encoder().encode
_details_decode = msgspec.json.Decoder(dict[str, str | int | bool | None]).decode


def _audit_rows(entries: Sequence[AuditEntry]) -> tuple[str, list[tuple[Any, ...]]]:
    return ("INSERT INTO audit (at, actor, action, target, conv, reason, details) VALUES (?,?,?,?,?,?,?)",
            [(e.at, e.actor, e.action, e.target, e.conv, e.reason, _details_encode(e.details)) for e in entries])


def _reactions(items: list[SetReaction]) -> list[tuple[str, list[tuple[Any, ...]]]]:
    final = {(m.conv, m.seq, m.emoji, m.user): m.on for m in items}  # the last toggle wins
    return [
        ("INSERT INTO reactions (conv, seq, emoji, user) VALUES (?,?,?,?) ON CONFLICT DO NOTHING",
         [k for k, on in final.items() if on]),
        ("DELETE FROM reactions WHERE conv = ? AND seq = ? AND emoji = ? AND user = ?",
         [k for k, on in final.items() if not on]),
    ]


Statements = list[tuple[str, list[tuple[Any, ...]]]]
_WRITES: dict[type, Callable[[list[Any]], Statements]] = {
    CreateConv: lambda items: [(
        f"INSERT INTO convs ({_CONV_COLS}) VALUES ({_marks(_N_CONV)})",
        [(r.id, r.kind, r.title, r.visibility, r.password_hash, r.history, r.owner, r.created_at, r.last_seq,
          *_conv_settings(r)[4:]) for r in (m.row for m in items)])],
    UpdateConv: lambda items: [(
        "UPDATE convs SET title = ?, visibility = ?, password_hash = ?, history = ?, slow_mode_s = ?, read_only = ?, "
        "permissions = ?, pinned = ?, allow_guests = ? WHERE id = ?", [(*_conv_settings(m.row), m.row.id) for m in items])],
    PutSanction: lambda items: [(
        f"INSERT OR REPLACE INTO sanctions ({_SANCTION_COLS}) VALUES ({_marks(7)})",
        [(r.conv, r.user, r.kind, r.until, r.by, r.at, r.reason) for r in (m.row for m in items)])],
    DropSanction: lambda items: [(
        "DELETE FROM sanctions WHERE conv = ? AND user = ? AND kind = ?", [(m.conv, m.user, m.kind) for m in items])],
    PutBlock: lambda items: [(
        "INSERT INTO blocks (blocker, blocked, at) VALUES (?,?,?) ON CONFLICT DO NOTHING",
        [(m.blocker, m.blocked, m.at) for m in items])],
    DropBlock: lambda items: [(
        "DELETE FROM blocks WHERE blocker = ? AND blocked = ?", [(m.blocker, m.blocked) for m in items])],
    SetConvHead: lambda items: [(
        "UPDATE convs SET last_seq = ? WHERE id = ?", [(m.last_seq, m.conv) for m in items])],
    SetConvOwner: lambda items: [(
        "UPDATE convs SET owner = ? WHERE id = ?", [(m.owner, m.conv) for m in items])],
    PutMember: lambda items: [(
        f"INSERT OR REPLACE INTO members ({_MEMBER_COLS}) VALUES ({_marks(6)})",
        [(r.conv, r.user, r.role, r.visible_from, r.read_seq, r.joined_at) for r in (m.row for m in items)])],
    DropMember: lambda items: [(
        "DELETE FROM members WHERE conv = ? AND user = ?", [(m.conv, m.user) for m in items])],
    SetReadSeq: lambda items: [(
        "UPDATE members SET read_seq = ? WHERE conv = ? AND user = ?",
        [(m.read_seq, m.conv, m.user) for m in items])],
    InsertMessage: lambda items: [(
        f"INSERT INTO messages ({_MSG_COLS}) VALUES ({_marks(11)})",
        [(x.conv, x.seq, x.sender, x.ts, x.cmid, x.text, x.reply_to,
          _ids.encode(x.attachments) if x.attachments else None,
          _ids.encode(x.mentions) if x.mentions else None, x.edited_at, int(x.deleted))
         for x in (m.message for m in items)])],
    UpdateMessage: lambda items: [(
        "UPDATE messages SET text = ?, edited_at = ?, deleted = ?, "
        "attachments = CASE WHEN ? THEN NULL ELSE attachments END WHERE conv = ? AND seq = ?",
        [(m.text, m.edited_at, int(m.deleted), int(m.deleted), m.conv, m.seq) for m in items])],
    SetReaction: _reactions,
    PutOutbox: lambda items: [(
        "INSERT INTO outbox (record, shard) VALUES (?, ?)", [(_record_encode(m.record), m.shard) for m in items])],
    PutAudit: lambda items: [_audit_rows([m.entry for m in items])],
}
