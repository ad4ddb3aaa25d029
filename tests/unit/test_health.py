"""/healthz, /readyz and /metrics of every role (parley.health)."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY

from parley import hops
from parley.errors import Unavailable
from parley.health import add_health_routes, count_refused, pipeline_task


async def client_for(checks: dict[str, bool], alive: list[bool] | None = None) -> TestClient:
    async def ready() -> dict[str, bool]:
        return checks

    app = web.Application()
    add_health_routes(app, ready, "w-1", (lambda: alive[0]) if alive is not None else None)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_a_worker_whose_task_ended_fails_liveness_so_it_is_restarted() -> None:
    alive = [True]
    client = await client_for({"worker": True}, alive)
    try:
        resp = await client.get("/healthz")
        assert resp.status == 200 and (await resp.json()) == {"status": "ok", "id": "w-1"}
        alive[0] = False
        resp = await client.get("/healthz")
        assert resp.status == 503 and (await resp.json()) == {"status": "dead", "id": "w-1"}
    finally:
        await client.close()


async def test_readiness_names_the_failing_dependency_and_metrics_are_prometheus_text() -> None:
    client = await client_for({"kafka": True, "redis": False})
    try:
        resp = await client.get("/readyz")
        assert resp.status == 503
        assert await resp.json() == {"ready": False, "checks": {"kafka": True, "redis": False}, "id": "w-1"}
        assert (await client.get("/healthz")).status == 200  # no liveness hook: alive while serving
        resp = await client.get("/metrics")
        assert resp.status == 200 and resp.content_type == "text/plain"
        assert hops.HOP_SECONDS._name in await resp.text()
    finally:
        await client.close()


async def test_a_pipeline_task_that_ends_is_logged_with_its_exception_and_a_cancelled_one_is_not(
        caplog: pytest.LogCaptureFixture) -> None:
    async def fails() -> None:
        raise RuntimeError("the loop broke")

    async def forever() -> None:
        await asyncio.Event().wait()

    broken, running = pipeline_task(fails(), "consumer"), pipeline_task(forever(), "sweeper")
    await asyncio.gather(broken, return_exceptions=True)
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    await asyncio.sleep(0)  # done callbacks run on the next loop pass
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert [r.getMessage() for r in errors] == ["consumer stopped; the process is unhealthy until restarted"]
    assert errors[0].exc_info is not None and "the loop broke" in str(errors[0].exc_info[1])


def test_a_refusal_is_counted_with_the_exceptions_behind_it() -> None:
    def counted(cause: str) -> float:
        return REGISTRY.get_sample_value("parley_requests_refused_total",
                                         {"code": "unavailable", "cause": cause}) or 0.0

    try:
        try:
            raise TimeoutError()
        except TimeoutError as timeout:
            raise ConnectionError() from timeout
    except ConnectionError as lost:
        err = Unavailable("redis away", retry_after_ms=1000)
        err.__cause__ = lost
    before = counted("ConnectionError < TimeoutError")
    count_refused(err, 3)
    assert counted("ConnectionError < TimeoutError") == before + 3
