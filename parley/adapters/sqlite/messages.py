"""The SQLite store's conversations, members, messages and outbox: chat_core's prefetch and
batched apply, the outbox relay's reads and checkpoints, and the gateway's and delivery's reads.

The primary key (conv, seq) and the unique (conv, sender, cmid) index make a reused seq or a
duplicated send impossible to store, whatever the code above does.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from itertools import groupby
from operator import itemgetter

import msgspec

from parley.adapters.sqlite.attachments import ATTACHMENT_COLS, attachment_row
from parley.adapters.sqlite.calls import prefetch_calls
from parley.adapters.sqlite.database import CHUNK, SqliteDatabase, chunks, marks
from parley.adapters.sqlite.rows import (
    CONV_COLS, INVITATION_COLS, MEMBER_COLS, MSG_COLS, N_CONV, SANCTION_COLS, conv_row, invitation_row, member_row,
    message_row, sanction_row,
)
from parley.adapters.sqlite.writes import write
from parley.errors import Conflict, Unavailable
from parley.frames import Message
from parley.records import (
    ConvRow, ConvState, EventRecord, Facts, InvitationRow, MemberRow, Mutation, Needs, PutOutbox, SanctionRow,
    unread_count,
)

_record_decode = msgspec.msgpack.Decoder(EventRecord).decode


def blocks_lookup_sql(n: int) -> str:
    """Blocks either way within n pairs (a, b): 2n keys searched in the primary key."""
    keys = ",".join("(?,?),(?,?)" for _ in range(n))
    return (f"WITH k(blocker, blocked) AS (VALUES {keys}) SELECT b.blocker, b.blocked "
            "FROM k JOIN blocks b ON b.blocker = k.blocker AND b.blocked = k.blocked")


# Keyed lookups join a VALUES list: SQLite plans `(a, b) IN (VALUES ...)` as a scan of the
# whole table, but a join searches the index once per key.
def idem_lookup_sql(n: int) -> str:
    keys = ",".join("(?,?,?)" for _ in range(n))
    return (f"WITH k(conv, sender, cmid) AS (VALUES {keys}) SELECT m.conv, m.sender, m.cmid, m.seq, m.ts "
            "FROM k JOIN messages m ON m.conv = k.conv AND m.sender = k.sender AND m.cmid = k.cmid")


def message_lookup_sql(n: int) -> str:
    """The messages of n (conv, seq) keys, each row with its edit count last."""
    keys = ",".join("(?,?)" for _ in range(n))
    cols = ", ".join(f"m.{c.strip()}" for c in MSG_COLS.split(","))
    return (f"WITH k(conv, seq) AS (VALUES {keys}) SELECT {cols}, m.edits FROM k "
            "JOIN messages m ON m.conv = k.conv AND m.seq = k.seq")


class SqliteMessages(SqliteDatabase):
    """Implements parley.ports.MessageStore."""

    # ---- chat_core ------------------------------------------------------------------------

    async def prefetch(self, needs: Needs) -> Facts:
        return await self._write(lambda conn: self._prefetch(conn, needs))

    def _prefetch(self, conn: sqlite3.Connection, needs: Needs) -> Facts:
        facts = Facts()
        for part in chunks(sorted(needs.convs)):
            for row in conn.execute(f"SELECT {CONV_COLS} FROM convs WHERE id IN ({marks(len(part))})", part):
                facts.convs[row[0]] = ConvState(conv_row(row), {})
            for row in conn.execute(f"SELECT {MEMBER_COLS} FROM members WHERE conv IN ({marks(len(part))})", part):
                facts.convs[row[0]].members[row[1]] = member_row(row)
            for row in conn.execute(f"SELECT {SANCTION_COLS} FROM sanctions WHERE conv IN ({marks(len(part))})", part):
                sanction = sanction_row(row)
                state = facts.convs[sanction.conv]
                (state.mutes if sanction.kind == "mute" else state.bans)[sanction.user] = sanction
            for row in conn.execute(f"SELECT {INVITATION_COLS} FROM invitations WHERE conv IN ({marks(len(part))})",
                                    part):
                invitation = invitation_row(row)
                facts.convs[invitation.conv].invitations[invitation.user] = invitation
        # A direct conversation carries the blocks between its two members.
        pairs = {tuple(sorted(s.members)): s for s in facts.convs.values() if s.row.kind == "direct" and len(s.members) == 2}
        for ppart in chunks(sorted(pairs), CHUNK // 4):
            for blocker, blocked in conn.execute(blocks_lookup_sql(len(ppart)), [x for a, b in ppart for x in (a, b, b, a)]):
                pairs[tuple(sorted((blocker, blocked)))].blocks.add((blocker, blocked))
        wanted = sorted({tuple(sorted(p)) for p in needs.blocks})
        for bpart in chunks(wanted, CHUNK // 4):
            facts.blocks.update(conn.execute(blocks_lookup_sql(len(bpart)), [x for a, b in bpart for x in (a, b, b, a)]))
        for upart in chunks(sorted(needs.users | needs.accounts)):
            for user, created_at in conn.execute(
                    f"SELECT id, created_at FROM users WHERE id IN ({marks(len(upart))})", upart):
                facts.users.add(user)
                facts.created_at[user] = created_at
        for ipart in chunks(sorted(needs.idem), CHUNK // 3):
            for conv, sender, cmid, seq, ts in conn.execute(idem_lookup_sql(len(ipart)), [x for k in ipart for x in k]):
                facts.idem[(conv, sender, cmid)] = (seq, ts)
        for mpart in chunks(sorted(needs.messages), CHUNK // 2):
            for row in conn.execute(message_lookup_sql(len(mpart)), [x for k in mpart for x in k]):
                facts.messages[(row[0], row[1])] = message_row(row)
                if row[-1]:
                    facts.edits[(row[0], row[1])] = row[-1]
        self._attach_reactions(conn, list(facts.messages.values()))
        for apart in chunks(sorted(needs.attachments)):
            for row in conn.execute(
                    f"SELECT {ATTACHMENT_COLS} FROM attachments WHERE id IN ({marks(len(apart))})", apart):
                facts.attachments[row[0]] = attachment_row(row)
        prefetch_calls(conn, needs, facts)
        return facts

    async def apply(self, mutations: Sequence[Mutation]) -> list[int]:
        return await self._write(lambda conn: self._apply(conn, mutations))

    def _apply(self, conn: sqlite3.Connection, mutations: Sequence[Mutation]) -> list[int]:
        outbox = sum(isinstance(m, PutOutbox) for m in mutations)
        try:
            conn.execute("BEGIN IMMEDIATE")
            # Consecutive writes of one statement go in one executemany; their order is kept (a
            # send then an edit of it, a leave then a rejoin, in one batch).
            for sql, run in groupby(map(write, mutations), key=itemgetter(0)):
                conn.executemany(sql, [params for _, params in run])
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

    # ---- reads ----------------------------------------------------------------------------

    async def membership(self, conv: str, user: str) -> tuple[ConvRow, MemberRow | None] | None:
        def run(conn: sqlite3.Connection) -> tuple[ConvRow, MemberRow | None] | None:
            row = conn.execute(f"SELECT {CONV_COLS} FROM convs WHERE id = ?", (conv,)).fetchone()
            if row is None:
                return None
            mrow = conn.execute(f"SELECT {MEMBER_COLS} FROM members WHERE conv = ? AND user = ?",
                                (conv, user)).fetchone()
            return conv_row(row), member_row(mrow) if mrow else None
        return await self._read(run)

    async def conv_list(self, user: str) -> list[tuple[ConvRow, MemberRow, str | None]]:
        """The user's conversations with their membership and, for direct ones, the peer."""
        def run(conn: sqlite3.Connection) -> list[tuple[ConvRow, MemberRow, str | None]]:
            cols = ", ".join(f"c.{c.strip()}" for c in CONV_COLS.split(","))
            mcols = ", ".join(f"m.{c.strip()}" for c in MEMBER_COLS.split(","))
            # The peer in a subquery that only a direct conversation runs: as a LEFT JOIN, SQLite
            # walked every member of every conversation the user is in (a login of a member of a
            # 100,000-member channel read 100,000 rows: 20 ms, against 0.1 ms).
            rows = conn.execute(
                f"SELECT {cols}, {mcols}, CASE WHEN c.kind = 'direct' THEN (SELECT p.user FROM members p "
                f"WHERE p.conv = c.id AND p.user != m.user LIMIT 1) END "
                f"FROM members m JOIN convs c ON c.id = m.conv WHERE m.user = ? ORDER BY c.created_at, c.id", (user,))
            n = N_CONV
            m = n + len(MEMBER_COLS.split(","))
            return [(conv_row(r[:n]), member_row(r[n:m]), r[m]) for r in rows]
        return await self._read(run)

    async def unread_counts(self, users: Sequence[str]) -> list[int]:
        def run(conn: sqlite3.Connection) -> list[int]:
            unread = dict.fromkeys(users, 0)
            for part in chunks(sorted(unread)):
                for user, last_seq, read_seq, visible_from in conn.execute(
                        f"SELECT m.user, c.last_seq, m.read_seq, m.visible_from FROM members m "
                        f"JOIN convs c ON c.id = m.conv WHERE m.user IN ({marks(len(part))})", part):
                    unread[user] += unread_count(last_seq, read_seq, visible_from)
            return [unread[u] for u in users]
        return await self._read(run)

    async def message_pages(self, pages: Sequence[tuple[str, int, int, int, bool]]) -> list[list[Message]]:
        """Per (conv, lo, hi, limit, newest): messages with lo <= seq < hi, ascending; the
        `limit` highest when `newest`, else the lowest. One thread hop for many conversations."""
        def run(conn: sqlite3.Connection) -> list[list[Message]]:
            out = []
            for conv, lo, hi, limit, newest in pages:
                order = "DESC" if newest else "ASC"
                rows = conn.execute(
                    f"SELECT {MSG_COLS} FROM messages WHERE conv = ? AND seq >= ? AND seq < ? "
                    f"ORDER BY seq {order} LIMIT ?", (conv, lo, hi, limit)).fetchall()
                msgs = [message_row(r) for r in (reversed(rows) if newest else rows)]
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

    async def invitations(self, user: str) -> list[tuple[InvitationRow, ConvRow]]:
        def run(conn: sqlite3.Connection) -> list[tuple[InvitationRow, ConvRow]]:
            icols = ", ".join(f"i.{c.strip()}" for c in INVITATION_COLS.split(","))
            cols = ", ".join(f"c.{c.strip()}" for c in CONV_COLS.split(","))
            rows = conn.execute(f"SELECT {icols}, {cols} FROM invitations i JOIN convs c ON c.id = i.conv "
                                "WHERE i.user = ? ORDER BY i.at, i.conv", (user,))
            return [(invitation_row(r[:4]), conv_row(r[4:])) for r in rows]
        return await self._read(run)

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

    async def sanctions(self, conv: str) -> list[SanctionRow]:
        def run(conn: sqlite3.Connection) -> list[SanctionRow]:
            return [sanction_row(r) for r in conn.execute(
                f"SELECT {SANCTION_COLS} FROM sanctions WHERE conv = ? ORDER BY at, user, kind", (conv,))]
        return await self._read(run)

    # ---- admin reads ----------------------------------------------------------------------

    async def conv_members(self, conv: str) -> tuple[ConvRow, list[MemberRow]] | None:
        def run(conn: sqlite3.Connection) -> tuple[ConvRow, list[MemberRow]] | None:
            row = conn.execute(f"SELECT {CONV_COLS} FROM convs WHERE id = ?", (conv,)).fetchone()
            if row is None:
                return None
            members = conn.execute(f"SELECT {MEMBER_COLS} FROM members WHERE conv = ? ORDER BY joined_at, user",
                                   (conv,))
            return conv_row(row), [member_row(m) for m in members]
        return await self._read(run)

    async def sent_messages(self, user: str, conv: str, after_seq: int, limit: int) -> list[Message]:
        def run(conn: sqlite3.Connection) -> list[Message]:
            # (conv, sender) is the prefix of the idempotency index: no scan of the conversation.
            rows = conn.execute(f"SELECT {MSG_COLS} FROM messages WHERE conv = ? AND sender = ? AND seq > ? "
                                "ORDER BY seq LIMIT ?", (conv, user, after_seq, limit)).fetchall()
            msgs = [message_row(r) for r in rows]
            self._attach_reactions(conn, msgs)
            return msgs
        return await self._read(run)
