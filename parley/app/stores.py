"""The storage adapters a process uses, chosen by configuration: the message store and where
attachments live. Every role and the embedded default build them here, the same way."""

from __future__ import annotations

import re
from collections.abc import Callable

from aiohttp import web

from parley.adapters.cassandra.session import ClusterSettings
from parley.adapters.local_attachments import LocalAttachments
from parley.adapters.local_blob_routes import BlobRoutes
from parley.adapters.s3_attachments import S3Attachments
from parley.adapters.sqlite.store import SqliteStore
from parley.config import Settings
from parley.ports import Attachments, Store

DB_FILE = "parley.db"
ATTACHMENTS_DIR = "attachments"


def cluster_settings(settings: Settings) -> ClusterSettings:
    if not settings.cassandra_hosts:
        raise ValueError("PARLEY_STORE=cassandra needs PARLEY_CASSANDRA_HOSTS")
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,47}", settings.cassandra_keyspace):
        raise ValueError(f"not a keyspace name: {settings.cassandra_keyspace!r}")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", settings.cassandra_dc):
        raise ValueError(f"not a datacenter name: {settings.cassandra_dc!r}")
    return ClusterSettings(
        hosts=settings.cassandra_hosts, port=settings.cassandra_port, keyspace=settings.cassandra_keyspace,
        local_dc=settings.cassandra_dc, username=settings.cassandra_username, password=settings.cassandra_password,
        replication=f"{{'class': 'NetworkTopologyStrategy', '{settings.cassandra_dc}': {settings.cassandra_rf}}}",
    )


async def open_store(settings: Settings) -> Store:
    """The configured store, open and ready (Cassandra: migrated with `parley migrate` first)."""
    if settings.store == "cassandra":
        from parley.adapters.cassandra.store import CassandraStore

        return await CassandraStore.connect(cluster_settings(settings), idem_ttl_s=settings.cassandra_idempotency_ttl_s,
                                            outbox_ttl_s=settings.cassandra_outbox_ttl_s)
    store = SqliteStore(settings.data_dir / DB_FILE, settings.sqlite_synchronous)
    await store.open()
    return store


def attachments_for(settings: Settings, secret: bytes) -> Attachments:
    """S3 when a bucket is configured; otherwise a directory of the data dir whose signed URLs
    the gateway serves itself (all gateways of one machine share it)."""
    if settings.s3 is None:
        return LocalAttachments(settings.data_dir / ATTACHMENTS_DIR, secret)
    return S3Attachments.from_settings(settings.s3)


def attachment_routes(attachments: Attachments) -> list[Callable[[web.Application], None]]:
    """What the gateway must serve for the attachments: a local directory's signed URLs point at it."""
    return [BlobRoutes(attachments).mount] if isinstance(attachments, LocalAttachments) else []
