"""The storage adapters a process uses, chosen by configuration: the message store and where
attachments live. Every role and the embedded default build them here, the same way."""

from __future__ import annotations

from parley.adapters.local_attachments import LocalAttachments
from parley.adapters.s3_attachments import S3Attachments
from parley.adapters.sqlite_store import SqliteStore
from parley.config import Settings
from parley.ports import Attachments, Store

DB_FILE = "parley.db"
ATTACHMENTS_DIR = "attachments"


async def open_store(settings: Settings) -> Store:
    store = SqliteStore(settings.data_dir / DB_FILE, settings.sqlite_synchronous)
    await store.open()
    return store


def attachments_for(settings: Settings, secret: bytes) -> Attachments:
    """S3 when a bucket is configured; otherwise a directory of the data dir whose signed URLs
    the gateway serves itself (all gateways of one machine share it)."""
    if settings.s3 is None:
        return LocalAttachments(settings.data_dir / ATTACHMENTS_DIR, secret)
    return S3Attachments.from_settings(settings.s3)
