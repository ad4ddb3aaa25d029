"""The SQLite store's accounts (`users`); registration spends an invite code (`invites`) in the
same transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from typing import Any

import msgspec

from parley.adapters.sqlite.database import SqliteDatabase, chunks, marks, transaction
from parley.errors import Conflict, Forbidden
from parley.profiles import key_successor, search_terms
from parley.records import WHO_MAY_ADD_DEFAULT, Account, AccountPatch, AccountQuery

_ACCOUNT_COLS = ("id, username, created_at, role, status, suspended_until, suspend_reason, guest, token_gen, "
                 "display_name, avatar, status_text, discoverable, who_may_add")
_PATCHED = ("username", "role", "status", "suspended_until", "suspend_reason", "password_hash", "display_name",
            "avatar", "status_text", "discoverable", "who_may_add")


def _account(row: Sequence[Any]) -> Account:
    return Account(id=row[0], username=row[1], created_at=row[2], role=row[3], status=row[4],
                   suspended_until=row[5], suspend_reason=row[6], guest=bool(row[7]), token_gen=row[8],
                   display_name=row[9], avatar=row[10], status_text=row[11], discoverable=bool(row[12]),
                   who_may_add=row[13] or WHO_MAY_ADD_DEFAULT)


def _put_terms(conn: sqlite3.Connection, user_id: str, username: str, display_name: str | None) -> None:
    conn.execute("DELETE FROM user_search_terms WHERE user = ?", (user_id,))
    conn.executemany("INSERT INTO user_search_terms (term, user) VALUES (?, ?)",
                     [(term, user_id) for term in search_terms(username, display_name)])


class SqliteAccounts(SqliteDatabase):
    """Implements parley.ports.AccountStore."""

    async def create_user(self, user_id: str, username: str, password_hash: str, created_at: int, *,
                          status: str = "active", guest: bool = False, invite: str | None = None) -> None:
        def run(conn: sqlite3.Connection) -> None:
            try:
                with transaction(conn):  # the code is spent only if the account is stored
                    if invite is not None:
                        used = conn.execute(
                            "UPDATE invites SET used_by = ?, used_at = ? WHERE code = ? AND used_by IS NULL "
                            "AND (expires_at IS NULL OR expires_at > ?)", (user_id, created_at, invite, created_at))
                        if used.rowcount != 1:
                            raise Forbidden("the invite code is unknown, used or expired")
                    conn.execute("INSERT INTO users (id, username, password_hash, created_at, status, guest) "
                                 "VALUES (?,?,?,?,?,?)",
                                 (user_id, username, password_hash, created_at, status, int(guest)))
                    _put_terms(conn, user_id, username, None)
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
            for name in _PATCHED:
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
                    if row is not None and (patch.username is not msgspec.UNSET
                                            or patch.display_name is not msgspec.UNSET):
                        _put_terms(conn, user_id, row[1], row[9])
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

    async def accounts(self, user_ids: Sequence[str]) -> list[Account]:
        def run(conn: sqlite3.Connection) -> list[Account]:
            ids = list(dict.fromkeys(user_ids))
            found = {r[0]: _account(r) for r in conn.execute(
                f"SELECT {_ACCOUNT_COLS} FROM users WHERE id IN ({marks(len(ids))})", ids)} if ids else {}
            return [found[i] for i in ids if i in found]
        return await self._read(run)

    async def search_directory(self, prefix: str, limit: int) -> list[Account]:
        def run(conn: sqlite3.Connection) -> list[Account]:
            rows = conn.execute(
                f"SELECT {', '.join('u.' + c for c in _ACCOUNT_COLS.split(', '))} FROM users u WHERE u.id IN "
                "(SELECT user FROM user_search_terms WHERE term >= ? AND term < ?) "
                "AND u.status = 'active' AND u.guest = 0 AND u.discoverable = 1 ORDER BY u.username LIMIT ?",
                (prefix, key_successor(prefix), limit))
            return [_account(r) for r in rows]
        return await self._read(run)

    async def who_may_add(self, user_ids: Collection[str]) -> dict[str, str]:
        def run(conn: sqlite3.Connection) -> dict[str, str]:
            out: dict[str, str] = {}
            for part in chunks(sorted(user_ids)):
                out.update(conn.execute(f"SELECT id, who_may_add FROM users WHERE id IN ({marks(len(part))}) "
                                        "AND who_may_add IS NOT NULL", part))
            return out
        return await self._read(run)
