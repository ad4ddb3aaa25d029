"""`make loadtest` in small: a headless, distributed Locust run (a master, two workers on their
own loopback source addresses) against a `parley dev` it starts, through the same command an
SRE runs; it must deliver messages and record no failure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
USERS = 40


def test_a_small_locust_run_delivers_every_message_and_records_no_failure(tmp_path: Path) -> None:
    results = tmp_path / "results"
    run = subprocess.run(
        [sys.executable, "-m", "loadtests.locust.run", "--system", "dev", "--scenario", "chat",
         "--users", str(USERS), "--spawn-rate", str(USERS), "--duration", "6", "--workers", "2",
         "--chat-fraction", "0.5", "--group-size", "10", "--rate", "10", "--results", str(results)],
        cwd=ROOT, capture_output=True, text=True, timeout=100)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    summary = json.loads((results / "summary.json").read_text())
    requests = summary["requests"]
    assert {name: r["failures"] for name, r in requests.items() if r["failures"]} == {}
    assert requests["connect"]["count"] == USERS
    acks = requests["send->ack"]["count"]
    # Every member of a group of 10 gets each of its messages, the sender's own session too.
    assert acks > 20 and requests["send->delivery group"]["count"] >= 10 * (acks - 10)
    assert "acked, not delivered" not in requests
    assert (results / "report.html").read_text().count("<script") > 0  # Locust's report, charts and all
    workers = [json.loads(p.read_text()) for p in [results / "plan-summary.json"]][0]["workers"]
    assert len(workers) == 2 and sum(workers) == USERS
    logs = "".join((results / f"worker-{w}.log").read_text() for w in range(2))
    assert "Traceback" not in logs
