"""A real Prometheus (Debian's) scrapes `parley up` under a short load and evaluates, through its
HTTP API, every dashboard panel expression and every recording and alert rule of observability/:
each must return series, so a misspelt metric or label fails here. The end-to-end histogram's
exemplars must carry trace ids."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from observability import dashboards
from parley.app.processes import ChildProcess, free_port, http_ok
from parley.errors import ParleyError
from parley.sdk import Client, login, register
from tests.conftest import ParleyProcess
from tests.integration.test_messaging import close_all
from tests.otlp_receiver import OtlpReceiver

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300),
              pytest.mark.skipif(shutil.which("prometheus") is None,
                                 reason="prometheus: `make test` installs Debian's package")]

RULES = Path(__file__).resolve().parents[2] / "observability" / "prometheus" / "rules.yml"
#: Exported by no process of `parley up` yet: push's sender counts, but no role sends pushes
#: (push is not wired to the pipeline). Expressions reading them are skipped, by name.
NOT_IN_UP = ("parley_push_", "parley:push_")
#: A metric or recording-rule name, with its label matchers if any.
SELECTOR = re.compile(r"\b((?:parley[_:]|process_)[a-zA-Z0-9_:]*)(\{[^}]*\})?")


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ParleyProcess]:
    receiver = OtlpReceiver()  # tracing on, so the histograms carry exemplars
    receiver.start()
    proc = ParleyProcess(tmp_path_factory.mktemp("prom-up") / "data", mode="up", env={
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_TRACES_SAMPLER_ARG": "1"})
    proc.start()
    yield proc
    proc.stop()
    receiver.stop()


@pytest.fixture(scope="module")
def prometheus(topology: ParleyProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("prometheus")
    processes = topology.topology()["processes"]
    jobs = {f"parley-{role}": [f"127.0.0.1:{p['metrics_port']}" for p in processes if p["role"] == role]
            for role in ("gateway", "chat-core", "delivery")}
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": targets}]}
                           for job, targets in jobs.items()],
    }
    (home / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = ChildProcess("prometheus", [
        shutil.which("prometheus") or "prometheus", f"--config.file={home / 'prometheus.yml'}",
        f"--storage.tsdb.path={home / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
        "--enable-feature=exemplar-storage"], home / "prometheus.log", ready=http_ok(url + "/api/v1/status/buildinfo"),
        ready_timeout_s=30.0)
    proc.start()
    yield url
    proc.stop()


async def load(base_url: str, seconds: float) -> None:
    """Sends in a group, reads, a history refusal, a policy denial (editing another's message),
    a refused hello and a login rate limit: every label value the rules and panels select."""
    run = f"p{os.getpid()}_{time.monotonic_ns() % 10**6}"
    users = [await register(base_url, f"{run}_{n}", "correct horse") for n in range(4)]
    clients = [await Client.connect(base_url, u.token) for u in users]
    conv = (await clients[0].request("conv.create", kind="group", members=[u.user_id for u in users[1:]],
                                     title="load"))["conv"]["id"]
    first = await clients[0].send(conv, "first")
    with pytest.raises(ParleyError):
        await clients[1].request("edit", conv=conv, seq=first["seq"], text="not mine")
    with pytest.raises(ParleyError):
        await clients[1].request("history", conv="c" + "0" * 16)
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(base_url.replace("http", "ws") + "/v1/ws", protocols=("parley.v1.json",)) as ws:
            await ws.send_json({"op": "hello", "rid": "h", "token": "not a token"})
            await ws.receive(timeout=5)
            await ws.receive(timeout=5)
    for _ in range(12):
        with pytest.raises(ParleyError):
            await login(base_url, users[0].username, "wrong")
    deadline = time.monotonic() + seconds
    for n in itertools.count():
        if time.monotonic() > deadline:
            break
        await clients[n % 4].send(conv, f"load {n}")
        await asyncio.sleep(0.02)
    await close_all(*clients)


async def query(http: aiohttp.ClientSession, url: str, expr: str) -> list[dict[str, Any]]:
    async with http.get(url + "/api/v1/query", params={"query": expr}) as resp:
        body = await resp.json()
    assert body["status"] == "success", (expr, body)
    return body["data"]["result"]


def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


async def test_every_panel_and_rule_returns_series_from_a_scraped_topology(
        topology: ParleyProcess, prometheus: str) -> None:
    await load(topology.base_url, 12)
    await asyncio.sleep(4)  # a few more scrapes and rule evaluations
    async with aiohttp.ClientSession() as http:
        async with http.get(prometheus + "/api/v1/targets") as resp:
            targets = (await resp.json())["data"]["activeTargets"]
        assert targets and all(t["health"] == "up" for t in targets), targets
        empty = []
        for name, (_, panels) in dashboards.DASHBOARDS.items():
            for panel in panels:
                if any(skip in panel.expr for skip in NOT_IN_UP):
                    continue
                if not await query(http, prometheus, panel.expr):
                    empty.append(f"dashboard {name}: {panel.title}: {panel.expr}")
        for rule in rules():
            if any(skip in rule["expr"] for skip in NOT_IN_UP):
                continue
            if "record" in rule:
                for expr in (rule["expr"], rule["record"]):
                    if not await query(http, prometheus, expr):
                        empty.append(f"record {rule['record']}: {expr}")
            else:  # an alert is quiet on a healthy topology: each series it reads must exist
                for name, matchers in SELECTOR.findall(rule["expr"]):
                    if not await query(http, prometheus, name + matchers):
                        empty.append(f"alert {rule['alert']}: {name}{matchers}")
        assert not empty, "\n".join(empty)
        async with http.get(prometheus + "/api/v1/rules") as resp:
            groups = (await resp.json())["data"]["groups"]
        assert all(r["health"] == "ok" for g in groups for r in g["rules"]), groups
        now = time.time()
        async with http.get(prometheus + "/api/v1/query_exemplars", params={
                "query": 'parley_hop_seconds_bucket{hop="pipeline"}', "start": str(now - 120), "end": str(now)}) as resp:
            exemplars = (await resp.json())["data"]
        trace_ids = [e["labels"]["trace_id"] for series in exemplars for e in series["exemplars"]]
        assert trace_ids and all(re.fullmatch(r"[0-9a-f]{32}", t) for t in trace_ids)
