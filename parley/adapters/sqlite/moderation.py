"""The SQLite store's moderation tables: the audit log (`audit`, append-only by trigger), the
instance policy, invite codes and the reports queue."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from parley.adapters.sqlite.database import SqliteDatabase, marks
from parley.errors import Conflict
from parley.records import AuditEntry, AuditQuery, Invite, Report, ReportQuery

_INVITE_COLS = "code, created_by, created_at, expires_at, used_by, used_at"
_REPORT_COLS = ("id, at, reporter, kind, target_user, conv, seq, reason, excerpt, status, claimed_by, claimed_at, "
                "resolved_by, resolved_at, resolution, note")
#: Written by `append_audit` and by chat_core's batches (PutAudit, writes.py).
AUDIT_INSERT = "INSERT INTO audit (at, actor, action, target, conv, reason, details) VALUES (?,?,?,?,?,?,?)"
_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.Decoder().decode
_details_decode = msgspec.json.Decoder(dict[str, str | int | bool | None]).decode


def audit_params(e: AuditEntry) -> tuple[Any, ...]:
    return (e.at, e.actor, e.action, e.target, e.conv, e.reason, _json_encode(e.details))


def _invite(row: Sequence[Any]) -> Invite:
    return Invite(code=row[0], created_by=row[1], created_at=row[2], expires_at=row[3], used_by=row[4],
                  used_at=row[5])


def _report(row: Sequence[Any]) -> Report:
    return Report(id=row[0], at=row[1], reporter=row[2], kind=row[3], target_user=row[4], conv=row[5],
                  seq=row[6], reason=row[7], excerpt=row[8], status=row[9], claimed_by=row[10],
                  claimed_at=row[11], resolved_by=row[12], resolved_at=row[13], resolution=row[14], note=row[15])


class SqliteModeration(SqliteDatabase):
    """Implements parley.ports.ModerationStore."""

    # ---- audit log ------------------------------------------------------------------------

    async def append_audit(self, entries: Sequence[AuditEntry]) -> None:
        def run(conn: sqlite3.Connection) -> None:
            with conn:
                conn.executemany(AUDIT_INSERT, [audit_params(e) for e in entries])
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
                    conn.execute(f"INSERT INTO invites ({_INVITE_COLS}) VALUES ({marks(6)})",
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
                cur = conn.execute(f"INSERT INTO reports ({', '.join(cols)}) VALUES ({marks(len(cols))})",
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
