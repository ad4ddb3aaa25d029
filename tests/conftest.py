"""Fixtures: real `parley dev` processes on free loopback ports, and users registered on them."""

from __future__ import annotations

import itertools
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from parley.app.processes import ChildProcess, free_port, http_ok
from parley.sdk import Account, register
from tests.livekit_standin import LiveKitStandIn, StandInThread

ROOT = Path(__file__).resolve().parent.parent


#: `parley dev` (everything in one process) or `parley up` (the scale-out topology).
MODES = ("dev", "up")
#: The shared servers' ring timeout: short, so that a missed call is seen within a test.
RING_TIMEOUT_S = 6


class ParleyProcess(ChildProcess):
    """One `parley dev` or `parley up` subprocess; restartable on the same port and data dir."""

    def __init__(self, data_dir: Path, mode: str = "dev", port: int | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.mode = mode
        self.port = free_port() if port is None else port
        self._healthz = http_ok(self.base_url + "/healthz")
        argv = [sys.executable, "-m", "parley", mode, "--host", "127.0.0.1", "--port", str(self.port),
                "--data-dir", str(data_dir), "--log-level", "WARNING"]
        super().__init__(f"parley {mode}", argv, data_dir.parent / f"{data_dir.name}-{self.port}.log",
                         ready=self._ready, env=env, cwd=ROOT, ready_timeout_s=60.0, stop_timeout_s=20.0)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _ready(self) -> bool:
        # `parley up` writes its topology once the last process is ready too.
        return self._healthz() and (self.mode != "up" or (self.data_dir / "topology.json").exists())

    def log(self) -> str:
        """The process's log; for `up`, with every role's log after it."""
        text = super().log()
        for role_log in sorted((self.data_dir / "logs").glob("*.log")) if self.mode == "up" else ():
            text += f"\n---- {role_log.name}\n" + role_log.read_text(errors="replace")
        return text

    def topology(self) -> dict[str, Any]:
        """`parley up`'s topology.json: brokers and processes with their pids and ports."""
        return json.loads((self.data_dir / "topology.json").read_text())


    def webhook_url(self) -> str:
        """Where LiveKit's webhooks go: `parley dev` itself, or `parley up`'s calls role."""
        if self.mode == "dev":
            return self.base_url + "/v1/calls/livekit/webhook"
        (calls,) = [p for p in self.topology()["processes"] if p["role"] == "calls"]
        return f"http://127.0.0.1:{calls['port']}/v1/calls/livekit/webhook"


@pytest.fixture(scope="session")
def livekit() -> Iterator[StandInThread]:
    """The LiveKit the shared servers use (tests/livekit_standin.py): no LiveKit installs here."""
    standin = StandInThread(LiveKitStandIn("APIsharedstandin", "a-shared-stand-in-secret-of-32-chars"))
    standin.start()
    yield standin
    standin.stop()


@pytest.fixture(scope="session", params=MODES)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           livekit: StandInThread) -> Iterator[ParleyProcess]:
    """One server shared by the protocol tests (each test makes its own users and conversations);
    they run against `parley dev` and again, unchanged, against `parley up`'s 2 gateways. Calls
    are on, with the LiveKit stand-in."""
    # Every test registers its users from 127.0.0.1: the per-IP limit (its own tests use their own
    # servers) would refuse a suite that registers more than 100 a minute.
    proc = ParleyProcess(tmp_path_factory.mktemp(f"shared-{request.param}") / "data", mode=request.param,
                         env={"PARLEY_IP_AUTH_BURST": "100000", **livekit.env,
                              "PARLEY_CALL_RING_TIMEOUT_S": str(RING_TIMEOUT_S)})
    proc.start()
    yield proc
    proc.stop()
    if "Traceback" in proc.log():
        pytest.fail(f"the shared server logged a traceback:\n{proc.log()}")


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[Callable[..., ParleyProcess]]:
    """A server of the test's own, for restarts, kills and non-default settings."""
    started: list[ParleyProcess] = []

    def make(**env: str) -> ParleyProcess:
        proc = ParleyProcess(tmp_path / f"data{len(started)}", env=env)
        proc.start()
        started.append(proc)
        return proc

    yield make
    for proc in started:
        if proc.proc is not None:
            proc.stop(signal.SIGKILL)


_names = itertools.count()


@pytest.fixture
def make_user(server: ParleyProcess) -> Callable[..., Awaitable[Account]]:
    async def make(base_url: str | None = None) -> Account:
        name = f"u{os.getpid()}_{next(_names)}_{time.monotonic_ns() % 10**6}"
        return await register(base_url or server.base_url, name, "correct horse")
    return make
