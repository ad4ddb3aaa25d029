"""The SQLite store's login sessions: `session_families`, their `refresh_tokens` (by hash) and the
`revocations` log. SQLite has no TTL: a login purges what expired, an append to the log what is
older than REVOCATION_LOG_KEEP_S, each through an index on the time."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from parley.adapters.sqlite.database import SqliteDatabase, marks, rows_by_key, transaction
from parley.limits import REVOCATION_LOG_KEEP_S
from parley.records import RefreshToken, Revocation, SessionFamily

_FAMILY_COLS = "id, user_id, created_at, last_used_at, expires_at, label, token_gen, revoked_at"
_TOKEN_COLS = "hash, family, user_id, expires_at, used_at"
_REVOCATION_COLS = "id, at, user_id, family, token_gen, reason"


def _family(row: Sequence[Any]) -> SessionFamily:
    return SessionFamily(id=row[0], user_id=row[1], created_at=row[2], last_used_at=row[3], expires_at=row[4],
                         label=row[5], token_gen=row[6], revoked_at=row[7])


def _token(row: Sequence[Any]) -> RefreshToken:
    return RefreshToken(hash=row[0], family=row[1], user_id=row[2], expires_at=row[3], used_at=row[4])


def _insert_token(conn: sqlite3.Connection, token: RefreshToken) -> None:
    conn.execute(f"INSERT INTO refresh_tokens ({_TOKEN_COLS}) VALUES ({marks(5)})",
                 (token.hash, token.family, token.user_id, token.expires_at, token.used_at))


class SqliteSessions(SqliteDatabase):
    """Implements parley.ports.SessionStore."""

    async def create_session_family(self, family: SessionFamily, first: RefreshToken) -> None:
        f = family

        def run(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                now = f.created_at
                conn.execute("DELETE FROM refresh_tokens WHERE expires_at < ?", (now,))
                conn.execute("DELETE FROM session_families WHERE expires_at < ?", (now,))
                conn.execute(f"INSERT INTO session_families ({_FAMILY_COLS}) VALUES ({marks(8)})",
                             (f.id, f.user_id, f.created_at, f.last_used_at, f.expires_at, f.label, f.token_gen,
                              f.revoked_at))
                _insert_token(conn, first)
        await self._write(run)

    async def session_family(self, user_id: str, family_id: str) -> SessionFamily | None:
        def run(conn: sqlite3.Connection) -> SessionFamily | None:
            row = conn.execute(f"SELECT {_FAMILY_COLS} FROM session_families WHERE id = ? AND user_id = ?",
                               (family_id, user_id)).fetchone()
            return _family(row) if row else None
        return await self._read(run)

    async def session_families(self, user_id: str) -> list[SessionFamily]:
        [found] = await self.session_families_of([user_id])
        return found

    async def session_families_of(self, user_ids: Sequence[str]) -> list[list[SessionFamily]]:
        def run(conn: sqlite3.Connection) -> list[list[SessionFamily]]:
            found = rows_by_key(conn, f"SELECT user_id, {_FAMILY_COLS} FROM session_families "
                                      "WHERE user_id IN ({keys}) ORDER BY created_at, id", user_ids)
            return [[_family(r) for r in found.get(u, ())] for u in user_ids]
        return await self._read(run)

    async def refresh_token(self, token_hash: str) -> RefreshToken | None:
        def run(conn: sqlite3.Connection) -> RefreshToken | None:
            row = conn.execute(f"SELECT {_TOKEN_COLS} FROM refresh_tokens WHERE hash = ?", (token_hash,)).fetchone()
            return _token(row) if row else None
        return await self._read(run)

    async def rotate_refresh_token(self, used: RefreshToken, successor: RefreshToken, at: int) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            with transaction(conn):
                spent = conn.execute("UPDATE refresh_tokens SET used_at = ? WHERE hash = ? AND used_at IS NULL",
                                     (at, used.hash))
                if spent.rowcount != 1:
                    return False
                _insert_token(conn, successor)
                conn.execute("UPDATE session_families SET last_used_at = ?, expires_at = ? WHERE id = ?",
                             (at, successor.expires_at, successor.family))
                return True
        return await self._write(run)

    async def revoke_session_family(self, user_id: str, family_id: str, at: int) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            with conn:
                done = conn.execute("UPDATE session_families SET revoked_at = ? "
                                    "WHERE id = ? AND user_id = ? AND revoked_at IS NULL", (at, family_id, user_id))
            return done.rowcount == 1
        return await self._write(run)

    async def append_revocation(self, revocation: Revocation) -> None:
        r = revocation

        def run(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                conn.execute("DELETE FROM revocations WHERE at < ?", (r.at - REVOCATION_LOG_KEEP_S * 1000,))
                conn.execute(f"INSERT INTO revocations ({_REVOCATION_COLS}) VALUES ({marks(6)})",
                             (r.id, r.at, r.user_id, r.family, r.token_gen, r.reason))
        await self._write(run)

    async def revocations_since(self, at: int) -> list[Revocation]:
        def run(conn: sqlite3.Connection) -> list[Revocation]:
            return [Revocation(id=r[0], at=r[1], user_id=r[2], family=r[3], token_gen=r[4], reason=r[5])
                    for r in conn.execute(f"SELECT {_REVOCATION_COLS} FROM revocations WHERE at >= ? ORDER BY at, id",
                                          (at,))]
        return await self._read(run)
