"""`python -m loadtests.hold` holds its sessions through their heartbeats: every session says
hello, pings at the server's heartbeat and is still there when it is closed at the end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, ParleyProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_the_holder_holds_every_session_through_its_pings(tmp_path: Path) -> None:
    server = ParleyProcess(tmp_path / "data", env={"PARLEY_HEARTBEAT_S": "1"})
    server.start()
    try:
        tokens = tmp_path / "tokens.json"
        subprocess.run([sys.executable, "-m", "parley", "admin", "--data-dir", str(server.data_dir),
                        "loadtest-users", "--count", "30", "--out", str(tokens)],
                       env={**os.environ, "PARLEY_ALLOW_LOADTEST_USERS": "1"}, check=True, cwd=ROOT)
        out = tmp_path / "summary.json"
        subprocess.run([sys.executable, "-m", "loadtests.hold", "--url", server.base_url, "--accounts", str(tokens),
                        "--sessions", "30", "--procs", "2", "--rate", "60", "--duration", "4", "--out", str(out)],
                       check=True, cwd=ROOT, timeout=120, capture_output=True)
    finally:
        server.stop()
    summary = json.loads(out.read_text())
    assert summary["peak_held"] == 30
    final = summary["final"]
    assert final["connected"] == 30 and final["held"] == 0  # all closed at the end, by the holder
    assert final["unexpected_closes"] == 0 and final["ping_failures"] == 0
    assert final["pings"] >= 30 * 2  # a 1 s heartbeat over 4 s held: several each
