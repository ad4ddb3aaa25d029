"""Fixtures: real `parley dev` processes on free loopback ports, and users registered on them."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from parley.app.localservers import die_with_parent, free_port
from parley.sdk import Account, register

ROOT = Path(__file__).resolve().parent.parent


#: `parley dev` (everything in one process) or `parley up` (the scale-out topology).
MODES = ("dev", "up")


@dataclass
class ParleyProcess:
    """One `parley dev` or `parley up` subprocess; restartable on the same port and data dir."""

    data_dir: Path
    mode: str = "dev"
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-{self.port}.log"
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "parley", self.mode, "--host", "127.0.0.1", "--port", str(self.port),
                 "--data-dir", str(self.data_dir), "--log-level", "WARNING"],
                cwd=ROOT, env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"parley {self.mode} exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.base_url + "/healthz", timeout=1) as resp:
                    # `parley up` writes its topology once the last process is ready too.
                    if resp.status == 200 and (self.mode != "up" or (self.data_dir / "topology.json").exists()):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"parley {self.mode} did not become healthy:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.proc.wait(timeout)
        self.proc = None
        return rc

    def log(self) -> str:
        """The process's log; for `up`, with every role's log after it."""
        text = self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""
        for role_log in sorted((self.data_dir / "logs").glob("*.log")) if self.mode == "up" else ():
            text += f"\n---- {role_log.name}\n" + role_log.read_text(errors="replace")
        return text

    def topology(self) -> dict[str, Any]:
        """`parley up`'s topology.json: brokers and processes with their pids and ports."""
        return json.loads((self.data_dir / "topology.json").read_text())


@pytest.fixture(scope="session", params=MODES)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ParleyProcess]:
    """One server shared by the protocol tests (each test makes its own users and conversations);
    they run against `parley dev` and again, unchanged, against `parley up`'s 2 gateways."""
    proc = ParleyProcess(tmp_path_factory.mktemp(f"shared-{request.param}") / "data", mode=request.param)
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
