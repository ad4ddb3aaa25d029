"""`parley up` restarts a worker whose pipeline ended, as a Kubernetes liveness probe would."""

from __future__ import annotations

from pathlib import Path

import pytest

from parley.app import up
from parley.app.processes import ChildProcess
from parley.app.up import Child, Topology


def child(role: str) -> Child:
    return Child(role, 4000, ChildProcess(f"{role}-1", ["true"], Path("/dev/null"), ready=lambda: True))


@pytest.mark.parametrize(("role", "answer", "dead"), [
    ("chat-core", (503, {"status": "dead"}), True),
    ("delivery", (503, {"status": "dead"}), True),
    ("delivery", (200, {"status": "ok"}), False),
    ("delivery", OSError("connection refused"), False),  # starting, or busy: not a verdict
    ("gateway", (503, {"status": "dead"}), False),  # shares the client port: not probed
])
def test_a_worker_is_dead_when_its_healthz_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, role: str,
                                                   answer: object, dead: bool) -> None:
    asked: list[str] = []

    def get(url: str, timeout: float = 1.0) -> object:
        asked.append(url)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(up, "get_json", get)
    topology = Topology("127.0.0.1", 8080, tmp_path)
    assert topology._dead(child(role)) is dead
    assert asked == ([] if role == "gateway" else ["http://127.0.0.1:4000/healthz"])
