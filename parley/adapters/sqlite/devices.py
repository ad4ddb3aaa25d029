"""The SQLite store's push devices (one row per token) and notification settings (one row per
user and scope)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from parley.adapters.sqlite.database import SqliteDatabase, marks, rows_by_key, transaction
from parley.records import Device, NotifySettings

_DEVICE_COLS = "id, user_id, family_id, platform, token, app_id, locale, created_at"


def _device(row: Sequence[Any]) -> Device:
    return Device(id=row[0], user_id=row[1], family_id=row[2], platform=row[3], token=row[4], app_id=row[5],
                  locale=row[6], created_at=row[7])


class SqliteDevices(SqliteDatabase):
    """Implements parley.ports.DeviceStore."""

    async def register_device(self, device: Device) -> None:
        d = device

        def run(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                conn.execute("DELETE FROM devices WHERE token = ?", (d.token,))  # the token moves
                conn.execute(f"INSERT OR REPLACE INTO devices ({_DEVICE_COLS}) VALUES ({marks(8)})",
                             (d.id, d.user_id, d.family_id, d.platform, d.token, d.app_id, d.locale, d.created_at))
        await self._write(run)

    async def devices(self, user_id: str) -> list[Device]:
        [found] = await self.devices_of([user_id])
        return found

    async def devices_of(self, user_ids: Sequence[str]) -> list[list[Device]]:
        def run(conn: sqlite3.Connection) -> list[list[Device]]:
            found = rows_by_key(conn, f"SELECT user_id, {_DEVICE_COLS} FROM devices WHERE user_id IN ({{keys}}) "
                                      "ORDER BY created_at, id", user_ids)
            return [[_device(r) for r in found.get(u, ())] for u in user_ids]
        return await self._read(run)

    async def delete_device(self, user_id: str, device_id: str) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            with conn:
                done = conn.execute("DELETE FROM devices WHERE id = ? AND user_id = ?", (device_id, user_id))
            return done.rowcount == 1
        return await self._write(run)

    async def notify_settings(self, user_id: str) -> dict[str, NotifySettings]:
        [found] = await self.notify_settings_of([user_id])
        return found

    async def notify_settings_of(self, user_ids: Sequence[str]) -> list[dict[str, NotifySettings]]:
        def run(conn: sqlite3.Connection) -> list[dict[str, NotifySettings]]:
            found = rows_by_key(conn, "SELECT user_id, scope, level, mute_until, previews FROM notify_settings "
                                      "WHERE user_id IN ({keys})", user_ids)
            return [{r[0]: NotifySettings(level=r[1], mute_until=r[2], previews=bool(r[3])) for r in found.get(u, ())}
                    for u in user_ids]
        return await self._read(run)

    async def put_notify_settings(self, user_id: str, scope: str, settings: NotifySettings | None) -> None:
        def run(conn: sqlite3.Connection) -> None:
            with conn:
                if settings is None:
                    conn.execute("DELETE FROM notify_settings WHERE user_id = ? AND scope = ?", (user_id, scope))
                else:
                    conn.execute("INSERT OR REPLACE INTO notify_settings (user_id, scope, level, mute_until, previews) "
                                 "VALUES (?, ?, ?, ?, ?)",
                                 (user_id, scope, settings.level, settings.mute_until, int(settings.previews)))
        await self._write(run)
