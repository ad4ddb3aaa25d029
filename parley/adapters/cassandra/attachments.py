"""The Cassandra store's attachment rows (`attachments`): what the gateway records of an upload,
and an image's size and thumbnails (`attachment_media`, 0006)."""

from __future__ import annotations

from parley.adapters.cassandra.database import CassandraDatabase
from parley.adapters.cassandra.session import Row
from parley.records import AttachmentRow


def attachment_row(r: Row, media: Row | None) -> AttachmentRow:
    row = AttachmentRow(id=r[0], conv=r[1], uploader=r[2], name=r[3], mime=r[4], size=r[5], created_at=r[6],
                        uploaded=bool(r[7]))
    if media is not None:
        row.width, row.height, row.thumbs = media[0], media[1], list(media[2] or [])
    return row


class CassandraAttachments(CassandraDatabase):
    """Implements parley.ports.AttachmentStore."""

    async def put_attachment(self, row: AttachmentRow) -> None:
        """The media row first: a reader that finds the attachment uploaded finds its media."""
        if row.width is not None:
            async with self._limit:
                await self._s.execute("attachment_media_put", [row.id, row.width, row.height, row.thumbs])
        async with self._limit:
            await self._s.execute("attachment_put", [row.id, row.conv, row.uploader, row.name, row.mime, row.size,
                                                     row.created_at, row.uploaded])

    async def attachment(self, attachment_id: str) -> AttachmentRow | None:
        r, media = await self._gather([self._one("attachment_get", [attachment_id]),
                                       self._one("attachment_media_get", [attachment_id])])
        return None if r is None else attachment_row(r, media)
