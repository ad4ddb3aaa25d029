"""Faults injected into `parley up` while Locust runs: kill -9 one gateway (a reconnect storm:
its clients reconnect with jittered backoff and catch up with `sync`), or a rolling restart
(each gateway in turn gets SIGTERM, tells its clients 4009 and drains; `parley up` starts it
again; the next one goes once it is back). Read from and waited on through topology.json.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

#: topology.json as `loadtests.topology.Topology.document` reads it.
Document = Callable[[], dict[str, Any]]
BACK_TIMEOUT_S = 60.0


def gateways(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return sorted((p for p in doc.get("processes", []) if p.get("role") == "gateway"), key=lambda p: str(p["name"]))


def _pid_of(doc: dict[str, Any], name: str) -> int | None:
    found = [p for p in gateways(doc) if p["name"] == name]
    return int(found[0]["pid"]) if found and found[0].get("pid") else None


def _wait_replaced(document: Document, name: str, old_pid: int) -> float:
    """Seconds until `parley up` lists a new process for `name` (it writes topology.json again)."""
    started = time.monotonic()
    while time.monotonic() - started < BACK_TIMEOUT_S:
        pid = _pid_of(document(), name)
        if pid is not None and pid != old_pid:
            return time.monotonic() - started
        time.sleep(0.2)
    raise TimeoutError(f"{name} was not started again within {BACK_TIMEOUT_S:.0f} s")


def kill_gateway(document: Document) -> dict[str, Any]:
    """kill -9 the first gateway; returns what was done and when `parley up` had it back."""
    target = gateways(document())[0]
    pid = int(target["pid"])
    at = time.time()
    os.kill(pid, signal.SIGKILL)
    back_s = _wait_replaced(document, str(target["name"]), pid)
    return {"fault": "kill -9", "gateway": target["name"], "pid": pid, "at": at, "restarted_after_s": back_s}


def rolling_restart(document: Document, settle_s: float) -> dict[str, Any]:
    """SIGTERM each gateway in turn (a 4009 drain), waiting until it is back and `settle_s` more."""
    steps = []
    for target in gateways(document()):
        pid = int(target["pid"])
        at = time.time()
        os.kill(pid, signal.SIGTERM)
        steps.append({"gateway": target["name"], "pid": pid, "at": at,
                      "restarted_after_s": _wait_replaced(document, str(target["name"]), pid)})
        time.sleep(settle_s)
    return {"fault": "rolling restart (SIGTERM, 4009 drain)", "steps": steps}
