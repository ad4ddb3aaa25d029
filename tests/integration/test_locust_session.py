"""The Locust suite's WebSocket session (loadtests/locust/wsclient.py) across a server crash:
sends made while the server is down go out once it is back, the receiver reconnects and catches
up, nothing is lost or delivered twice, and each session records the crash once as an unexpected
close."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from loadtests.locust.plan import Layout, read_accounts
from loadtests.locust.prepare import build_plan
from tests.conftest import ROOT, ParleyProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_session_resends_and_catches_up_across_a_server_crash(tmp_path: Path) -> None:
    server = ParleyProcess(tmp_path / "data")
    server.start()
    try:
        tokens = tmp_path / "tokens.json"
        subprocess.run([sys.executable, "-m", "parley", "admin", "--data-dir", str(server.data_dir),
                        "loadtest-users", "--count", "2", "--out", str(tokens)],
                       env={**os.environ, "PARLEY_ALLOW_LOADTEST_USERS": "1"}, check=True, cwd=ROOT)
        accounts = read_accounts(tokens)
        plan = asyncio.run(build_plan(server.base_url, "t", accounts, Layout(chatters=2, group_size=2, chat_rate=1), 1))
        driver = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("locust_session_driver.py")), server.base_url,
             plan.convs[0].id, accounts[0].token, accounts[1].token],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        assert driver.stdin is not None and driver.stdout is not None
        try:
            assert driver.stdout.readline().strip() == "delivered"
            server.stop(signal.SIGKILL)  # no 4009: both sockets just drop
            driver.stdin.write("down\n")
            driver.stdin.flush()
            assert driver.stdout.readline().strip() == "sending"
            server.start()
            out, err = driver.communicate(timeout=90)
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.communicate()
        assert driver.returncode == 0, err[-3000:]
        result = json.loads(out.strip().splitlines()[-1])
    finally:
        server.stop()
    texts = result["received"]
    assert sorted(texts) == sorted([f"before {n}" for n in range(3)] + [f"during {n}" for n in range(3)] + ["after"])
    assert all(r >= 1 for r in result["reconnects"])
    failures = [r for r in result["records"] if not r[1]]
    assert failures == [["unexpected close", False, "Unexpected('socket closed (code None)')"]] * 2
    assert ["reconnect", True, "None"] in result["records"]
