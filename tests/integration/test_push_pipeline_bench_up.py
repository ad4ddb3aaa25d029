"""`python -m loadtests.push_pipeline_bench --system up` for a few seconds at a low rate: `parley
up` started with push against the FCM stand-in (a process of its own), and its push worker's
numbers read from its `/metrics`."""

from __future__ import annotations

import pytest

from loadtests.push_bench import standins
from loadtests.push_pipeline_bench import run

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(180)]
MEMBERS, RATE, SECONDS = 10, 50, 3


async def test_parley_up_sends_every_push_asked_and_the_report_has_each_role(monkeypatch: pytest.MonkeyPatch) -> None:
    # standins() points this process's SSL_CERT_FILE at the stand-in's CA: restored after the test.
    monkeypatch.setenv("SSL_CERT_FILE", "")
    with standins() as (where, standin):
        report = await run("up", where, standin, members=MEMBERS, rate=RATE, seconds=SECONDS)
    # One message every MEMBERS / RATE s, each a push to every member (none offline has a session).
    assert report["messages"] == SECONDS * RATE // MEMBERS
    assert report["pushes_sent"] == report["messages"] * MEMBERS
    assert set(report) == {"asked_pushes_per_s", "members", "messages", "pushes_sent", "pushes_per_s", "retried",
                           "rate_limited", "duplicates_skipped", "p50_s", "p99_s", "decided_p50_s", "decided_p99_s",
                           "cpu_by_role", "standin_cpu"}
    assert set(report["cpu_by_role"]) == {"gateway", "chat-core", "delivery", "push", "kafka", "nats", "redis",
                                          "total"}
    assert 0 < report["decided_p99_s"] <= report["p99_s"] < float("inf")
