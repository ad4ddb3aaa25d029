"""`/healthz` (the process is alive), `/readyz` (its dependencies answer) and `/metrics`
(Prometheus text: the per-hop histograms of parley.hops and the process's own), for every role."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, generate_latest
from prometheus_client.openmetrics import exposition as openmetrics

from parley import metrics
from parley.errors import ParleyError

log = logging.getLogger(__name__)

#: Requests answered with an error by this process (gateway or chat_core), by code and, for an
#: `unavailable`, by what was unavailable (the exception behind it). Not logged one by one: an
#: outage would answer thousands.
REFUSED = Counter("parley_requests_refused", "Requests answered with an error frame, by code and cause.",
                  ["code", "cause"])


def count_refused(err: ParleyError, n: int = 1, cause: str | None = None) -> None:
    """`cause` defaults to the exceptions `err` was raised from, outermost first (e.g.
    "StorageError < TimeoutError": the rate limit's Redis call timed out)."""
    if cause is None:
        chain: list[str] = []
        behind = err.__cause__
        while behind is not None and len(chain) < 3:
            chain.append(type(behind).__name__)
            behind = behind.__cause__
        cause = " < ".join(chain)
    REFUSED.labels(err.code, cause).inc(n)


#: Named checks, each True when that dependency is usable now.
Ready = Callable[[], Awaitable[dict[str, bool]]]

#: How long one probe of a dependency may take: slower is not ready, and `/readyz` stays well
#: within an orchestrator's probe timeout (3 s in k8s/base) with a few probes in a row.
PROBE_TIMEOUT_S = 1.0


async def answers(probe: Callable[[], Awaitable[object]], timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether `probe()` (a ping: Redis, the store) completes within `timeout_s` without error."""
    try:
        async with asyncio.timeout(timeout_s):
            await probe()
        return True
    except Exception as exc:  # any failure means not ready; the reason is for the log
        log.debug("readiness probe %s failed: %r", getattr(probe, "__qualname__", probe), exc)
        return False


def add_health_routes(app: web.Application, ready: Ready, identity: str | None = None,
                      alive: Callable[[], bool] | None = None) -> None:
    """`identity` (e.g. the gateway id) is in every answer: several processes may share a port.
    `alive` False (a worker's pipeline task ended) fails `/healthz`, so an orchestrator restarts
    the process instead of leaving it to hold its partitions while doing nothing."""
    who = {"id": identity} if identity else {}

    async def healthz(_: web.Request) -> web.Response:
        if alive is not None and not alive():
            return web.json_response({"status": "dead", **who}, status=503)
        return web.json_response({"status": "ok", **who})

    async def readyz(_: web.Request) -> web.Response:
        checks = await ready()
        ok = all(checks.values())
        return web.json_response({"ready": ok, "checks": checks, **who}, status=200 if ok else 503)

    async def scrape(request: web.Request) -> web.Response:
        # OpenMetrics when the scraper asks for it (Prometheus does): only it carries exemplars,
        # the trace ids on the latency histograms.
        if "application/openmetrics-text" in request.headers.get("Accept", ""):
            return web.Response(body=openmetrics.generate_latest(REGISTRY),
                                headers={"Content-Type": openmetrics.CONTENT_TYPE_LATEST})
        return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def loop_lag(_: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(metrics.watch_event_loop(), name="event loop lag")
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", scrape)
    app.cleanup_ctx.append(loop_lag)


def pipeline_task(coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
    """A task the process lives for (a consumer loop, a sweeper): these never end on their own,
    so one that does is logged at once, with its exception, rather than found at shutdown."""
    task = asyncio.create_task(coro, name=name)

    def ended(done: asyncio.Task[None]) -> None:
        if not done.cancelled():
            log.error("%s stopped; the process is unhealthy until restarted", name, exc_info=done.exception())
    task.add_done_callback(ended)
    return task


class PipelineTasks:
    """The tasks a worker lives for (each a `pipeline_task`): running while none has ended, and
    cancelled together when it stops."""

    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []

    def add(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        self._tasks.append(pipeline_task(coro, name))

    def running(self) -> bool:
        return bool(self._tasks) and not any(t.done() for t in self._tasks)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
