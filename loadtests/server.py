"""The server under test: a `parley dev` the bench starts (or one already running at a URL), or
`parley up` (loadtests.topology); what the scenarios read of it (URL, pid, RSS, CPU, processes).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path
from typing import Any, Protocol

from loadtests import usage
from loadtests.topology import Topology
from parley.app.processes import ChildProcess, free_port, http_ok

try:
    import psutil
except ImportError:  # the numbers that need it are reported as unknown
    psutil = None


class Server:
    """A `parley dev` subprocess (or a running server at `url`, pid optional)."""

    label = "parley dev"
    rss_label = "server RSS"

    def __init__(self, url: str, pid: int | None, data_dir: Path | None = None,
                 process: ChildProcess | None = None) -> None:
        self.url = url
        self.pid = pid
        self.data_dir = data_dir
        self._process = process
        self._ps = psutil.Process(pid) if psutil is not None and pid else None
        self.leftovers: list[str] = []

    @classmethod
    async def start(cls, data_dir: Path, env: dict[str, str], log_path: Path) -> Server:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        process = ChildProcess(
            cls.label, [sys.executable, "-m", "parley", "dev", "--host", "127.0.0.1", "--port", str(port),
                        "--data-dir", str(data_dir)],
            log_path, ready=http_ok(url + "/healthz"), env=env, ready_timeout_s=60.0, stop_timeout_s=30.0,
            poll_s=0.1)
        # Spawned on this (the main) thread: the death signal follows the thread that forked.
        process.spawn()
        try:
            await asyncio.to_thread(process.wait_ready)
        except BaseException:
            await asyncio.to_thread(process.stop)
            raise
        return cls(url, process.pid, data_dir, process)

    async def stop(self) -> None:
        if self._process is not None:
            await asyncio.to_thread(self._process.stop)

    def rss(self) -> int | None:
        if self._ps is None:
            return None
        with contextlib.suppress(psutil.Error):
            return int(self._ps.memory_info().rss)
        return None

    def cpu(self) -> tuple[float, float] | None:
        """(process CPU seconds, main thread CPU seconds): the main thread runs the event loop."""
        if self._ps is None:
            return None
        with contextlib.suppress(psutil.Error):
            times = self._ps.cpu_times()
            main = next((t for t in self._ps.threads() if t.id == self.pid), None)
            main_s = (main.user_time + main.system_time) if main is not None else float("nan")
            return times.user + times.system, main_s
        return None

    def processes(self) -> list[dict[str, Any]]:
        """No topology: hopstats.scrape_all reads the one process at `url`."""
        return []

    def snapshot(self) -> list[usage.ProcSample]:
        if self._ps is None or self.pid is None:
            return []
        one = usage.sample(self._ps, usage.Member("parley dev", "dev", self.pid))
        return [one] if one is not None else []


class ServerUnderTest(Protocol):
    """What the scenarios use of a `Server` or a `Topology`."""

    label: str
    rss_label: str
    url: str
    pid: int | None
    leftovers: list[str]

    @property
    def data_dir(self) -> Path | None: ...

    def rss(self) -> int | None: ...
    def cpu(self) -> tuple[float, float] | None: ...
    def processes(self) -> list[dict[str, Any]]: ...
    def snapshot(self) -> list[usage.ProcSample]: ...
    async def stop(self) -> None: ...


async def start_server(topology: str, data_dir: Path, env: dict[str, str], gateways: int | None = None) -> ServerUnderTest:
    """`parley dev` or `parley up` (with `gateways` gateway processes, else its default) on a free
    port, on `data_dir`, logging into it."""
    if topology == "up":
        return await Topology.start(data_dir, env, data_dir / "up.log", gateways)
    return await Server.start(data_dir, env, data_dir / "server.log")
