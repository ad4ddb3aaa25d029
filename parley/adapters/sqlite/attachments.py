"""The SQLite store's attachment rows (`attachments`): what the gateway records of an upload."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import msgspec

from parley.adapters.sqlite.database import SqliteDatabase, marks
from parley.records import AttachmentRow

ATTACHMENT_COLS = "id, conv, uploader, name, mime, size, created_at, uploaded, width, height, thumbs"
_thumbs = msgspec.json.Decoder(list[int])


def attachment_row(row: Sequence[Any]) -> AttachmentRow:
    return AttachmentRow(id=row[0], conv=row[1], uploader=row[2], name=row[3], mime=row[4], size=row[5],
                         created_at=row[6], uploaded=bool(row[7]), width=row[8], height=row[9],
                         thumbs=_thumbs.decode(row[10]) if row[10] else [])


class SqliteAttachments(SqliteDatabase):
    """Implements parley.ports.AttachmentStore."""

    async def put_attachment(self, row: AttachmentRow) -> None:
        def run(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute(f"INSERT OR REPLACE INTO attachments ({ATTACHMENT_COLS}) VALUES ({marks(11)})",
                             (row.id, row.conv, row.uploader, row.name, row.mime, row.size, row.created_at,
                              int(row.uploaded), row.width, row.height,
                              msgspec.json.encode(row.thumbs) if row.thumbs else None))
        await self._write(run)

    async def attachment(self, attachment_id: str) -> AttachmentRow | None:
        def run(conn: sqlite3.Connection) -> AttachmentRow | None:
            row = conn.execute(f"SELECT {ATTACHMENT_COLS} FROM attachments WHERE id = ?",
                               (attachment_id,)).fetchone()
            return attachment_row(row) if row else None
        return await self._read(run)
