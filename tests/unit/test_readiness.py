"""`/readyz` checks the store: the probe is bounded, a failing or silent store makes the process
unready, and the embedded `parley dev` composes it like the roles do."""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from parley.adapters.sqlite.store import SqliteStore
from parley.config import Settings
from parley.app.embedded import build_app
from parley.errors import Unavailable
from parley.health import answers
from parley.app.roles import ROLES


async def test_a_probe_answers_only_if_it_completes_in_time_without_error():
    async def ok() -> None:
        pass

    async def fails() -> None:
        raise Unavailable("down", retry_after_ms=1000)

    async def silent() -> None:
        await asyncio.Event().wait()

    assert await answers(ok, 0.5)
    assert not await answers(fails, 0.5)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert not await answers(silent, 0.05)
    assert loop.time() - started < 0.5  # bounded: /readyz never hangs on a silent dependency


async def test_the_sqlite_store_answers_while_open_and_is_unavailable_once_closed(tmp_path: Path):
    store = SqliteStore(tmp_path / "parley.db", synchronous="NORMAL")
    await store.open()
    await store.ping()
    await store.close()
    with pytest.raises(Unavailable):
        await store.ping()


async def test_parley_dev_is_unready_while_its_store_does_not_answer(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch):
    client = TestClient(TestServer(await build_app(Settings(data_dir=tmp_path))))
    await client.start_server()
    try:
        resp = await client.get("/readyz")
        assert resp.status == 200 and (await resp.json())["checks"]["store"] is True

        async def unreachable(self: SqliteStore) -> None:
            raise Unavailable("store unreachable: disk I/O error", retry_after_ms=1000)
        monkeypatch.setattr(SqliteStore, "ping", unreachable)
        resp = await client.get("/readyz")
        body = await resp.json()
        assert resp.status == 503 and body["ready"] is False
        assert body["checks"] == {"chat_core": True, "delivery": True, "store": False}
    finally:
        await client.close()


def test_every_role_reports_its_store_in_readiness():
    """The roles need Kafka, NATS and Redis to start (their readiness runs in the integration
    tests); here: each one's `ready` probes the store as `parley dev`'s does, bounded."""
    for role, build in ROLES.items():
        assert '"store": await answers(store.ping)' in inspect.getsource(build), role
