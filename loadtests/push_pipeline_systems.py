"""The two servers `loadtests.push_pipeline_bench` measures, behind one small interface: where
to register and connect, how many pushes the worker has sent, its latency histograms, and the
CPU of the server's processes over the measured window.

`dev`: `parley dev`'s app in this process, its push worker's metrics read from the in-process
registry. `up`: `parley up` as a subprocess (loadtests.topology), its push worker's metrics
scraped from its `/metrics` and parsed with the same code, CPU summed per role of topology.json.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import threading
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any, AsyncContextManager, NamedTuple, Protocol

import psutil
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from loadtests.topology import Topology
from loadtests.usage import ProcSample, role_usage, total
from parley.app.embedded import build_app
from parley.config import Settings
from parley.limits import Limits
from parley.sdk import AiohttpTransport, AppTransport, Transport
from push.worker import DECISION_TO_PROVIDER, DUPLICATES, RATE_LIMITED, RETRIED, SENT, STORED_TO_PROVIDER

#: The per-device rate limit, high enough that no push of the benchmark is dropped by it.
DEVICE_PER_MINUTE = 1_000_000
#: What the benchmark reads of the push worker's metrics, in either system.
PUSH_METRICS = (SENT, RETRIED, RATE_LIMITED, DUPLICATES, STORED_TO_PROVIDER, DECISION_TO_PROVIDER)
PROVIDER = "fcm"

#: A histogram's cumulative buckets: (upper bound, count), in ascending order of bound.
Buckets = list[tuple[float, float]]


class PushCounts(NamedTuple):
    """The push worker's counters and histograms at one moment (since it started)."""

    sent: float
    retried: float
    rate_limited: float
    duplicates: float
    stored_to_provider: Buckets
    decision_to_provider: Buckets


def _family(collector: Any) -> str:
    return str(collector.describe()[0].name)


def push_counts(families: Iterable[Metric]) -> PushCounts:
    """The push worker's numbers from metric families: those an in-process collector yields, or
    those parsed from a `/metrics` text (both name a counter's family without `_total`)."""
    totals: dict[str, float] = {}
    histograms: dict[str, Buckets] = {}
    for family in families:
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.labels.get("provider", PROVIDER) == PROVIDER:
                totals[family.name] = sample.value
            elif sample.name.endswith("_bucket"):
                histograms.setdefault(family.name, []).append((float(sample.labels["le"]), sample.value))
    return PushCounts(totals.get(_family(SENT), 0.0), totals.get(_family(RETRIED), 0.0),
                      totals.get(_family(RATE_LIMITED), 0.0), totals.get(_family(DUPLICATES), 0.0),
                      histograms[_family(STORED_TO_PROVIDER)], histograms[_family(DECISION_TO_PROVIDER)])


def percent(cpu_s: float, elapsed: float) -> str:
    """CPU seconds over a window, as % of one core."""
    return f"{100 * cpu_s / elapsed:.0f}%"


def cpu_s(process: psutil.Process) -> float:
    """User + system CPU seconds of a process since it started."""
    times = process.cpu_times()
    return float(times.user + times.system)


class PushSystem(Protocol):
    """A server under test with push configured against the FCM stand-in."""

    base_url: str
    transport: Transport
    #: How often to ask `sent` while waiting for the last push.
    poll_s: float

    async def sent(self) -> float:
        """Pushes the provider accepted so far."""

    async def counts(self) -> PushCounts: ...

    def start_cpu_window(self) -> None: ...

    def cpu_report(self, elapsed: float) -> dict[str, Any]:
        """The server's CPU since `start_cpu_window`, as % of one core over `elapsed` seconds."""


class InProcess:
    """`parley dev`'s app in this process (SQLite, the push decision and the worker in-process)."""

    base_url = "http://parley.in-process"
    poll_s = 0.05

    def __init__(self, app: AppTransport) -> None:
        self.transport: Transport = app
        self._me = psutil.Process()
        self._cpu0 = self._loop0 = 0.0

    async def sent(self) -> float:
        return float(SENT.labels(PROVIDER)._value.get())

    async def counts(self) -> PushCounts:
        return push_counts(family for collector in PUSH_METRICS for family in collector.collect())

    def _event_loop_cpu_s(self) -> float:
        """CPU seconds of the event loop's thread (the store's reads and writes run in others)."""
        return next(t.user_time + t.system_time for t in self._me.threads() if t.id == threading.get_native_id())

    def start_cpu_window(self) -> None:
        self._cpu0, self._loop0 = cpu_s(self._me), self._event_loop_cpu_s()

    def cpu_report(self, elapsed: float) -> dict[str, Any]:
        return {"process_cpu": percent(cpu_s(self._me) - self._cpu0, elapsed),
                "event_loop_cpu": percent(self._event_loop_cpu_s() - self._loop0, elapsed)}


@contextlib.asynccontextmanager
async def dev_system(where: dict[str, Any]) -> AsyncIterator[InProcess]:
    """`where` is the stand-ins' (loadtests.push_bench.standins)."""
    with tempfile.TemporaryDirectory() as directory:
        settings = Settings(data_dir=Path(directory), fcm_credentials=Path(where["service_account"]),
                            fcm_endpoint=where["fcm_url"], push_device_per_minute=DEVICE_PER_MINUTE,
                            limits=Limits(ip_auth_burst=0))
        app = AppTransport(await build_app(settings))
        await app.start()
        try:
            yield InProcess(app)
        finally:
            await app.aclose()


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


class ParleyUp:
    """`parley up`: the push role (the decision and the worker) a process of its own, fed by Kafka."""

    # Each poll is a scrape the push worker answers, and its CPU counts in the window: not too often.
    poll_s = 0.25

    def __init__(self, topology: Topology, transport: AiohttpTransport) -> None:
        self.base_url = topology.url
        self.transport: Transport = transport
        self._topology = topology
        self._cpu0: list[ProcSample] = []

    async def _scrape(self) -> PushCounts:
        # Read from topology.json each time: a restarted worker has a new pid, its port stays.
        (worker,) = [p for p in self._topology.processes() if p["role"] == "push"]
        text = await asyncio.to_thread(_get, f"http://127.0.0.1:{worker['metrics_port']}/metrics")
        return push_counts(text_string_to_metric_families(text))

    async def sent(self) -> float:
        return (await self._scrape()).sent

    async def counts(self) -> PushCounts:
        return await self._scrape()

    def start_cpu_window(self) -> None:
        self._cpu0 = self._topology.snapshot()

    def cpu_report(self, elapsed: float) -> dict[str, Any]:
        """Per role (push, delivery, chat-core, gateway, the brokers) and their total."""
        roles = role_usage(self._cpu0, self._topology.snapshot(), elapsed)
        return {"cpu_by_role": {usage.role: percent(usage.cpu_s, elapsed) for usage in [*roles, total(roles)]}}


@contextlib.asynccontextmanager
async def up_system(where: dict[str, Any]) -> AsyncIterator[ParleyUp]:
    """`parley up` with push pointed at the FCM stand-in, on a data dir of its own."""
    with tempfile.TemporaryDirectory() as directory:
        env = {"PARLEY_FCM_CREDENTIALS": where["service_account"], "PARLEY_FCM_ENDPOINT": where["fcm_url"],
               "SSL_CERT_FILE": where["ca"], "PARLEY_PUSH_DEVICE_PER_MINUTE": str(DEVICE_PER_MINUTE),
               "PARLEY_IP_AUTH_BURST": "0"}
        topology = await Topology.start(Path(directory), env, Path(directory) / "up.log")
        transport = AiohttpTransport()
        try:
            yield ParleyUp(topology, transport)
        finally:
            await transport.aclose()
            await topology.stop()


SYSTEMS: dict[str, Callable[[dict[str, Any]], AsyncContextManager[PushSystem]]] = {
    "dev": dev_system, "up": up_system}
