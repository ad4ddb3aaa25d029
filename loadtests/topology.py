"""`--topology up`: the benchmark's server under test is `parley up` (brokers, 2 gateways on one
port, 2 chat-core, 2 delivery), started as a subprocess in its own process group and stopped so
that nothing it started is left behind.

`Topology` has the interface of the bench's `Server` where the scenarios use it (url, pid,
data_dir, rss, cpu, snapshot, processes, stop); its processes are re-read from topology.json
each time, because `parley up` starts a dead child again under a new pid.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from loadtests.runtime import log
from loadtests.usage import Member, ProcSample, members_of, sample
from parley.app.processes import ChildProcess, free_port, http_ok

try:
    import psutil
except ImportError:  # the numbers that need it are reported as unknown
    psutil = None

TOPOLOGY_FILE = "topology.json"
#: `parley up` stops its gateways, workers and brokers in turn, each with its own timeout.
STOP_TIMEOUT_S = 90.0
READY_TIMEOUT_S = 180.0


class Topology:
    """A `parley up` subprocess and the processes it names in topology.json."""

    label = "parley up"
    rss_label = "gateway RSS"

    def __init__(self, port: int, data_dir: Path, env: dict[str, str], log_path: Path,
                 gateways: int | None = None) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.data_dir = data_dir
        self._healthz = http_ok(self.url + "/healthz")
        # Its own session: a Ctrl-C in the terminal reaches the bench only, which then stops the
        # topology in order. It dies with the bench too (the bench's raised open-files limit is
        # inherited by every child).
        self._process = ChildProcess(
            self.label, [sys.executable, "-m", "parley", "up", "--host", "127.0.0.1", "--port", str(port),
                         "--data-dir", str(data_dir), *(["--gateways", str(gateways)] if gateways else [])],
            log_path, ready=self._ready, env=env, own_session=True, ready_timeout_s=READY_TIMEOUT_S,
            stop_timeout_s=STOP_TIMEOUT_S, poll_s=0.2)
        #: `parley up`'s pid, which is also its process group's id (set once started).
        self.pid: int | None = None
        #: Every process seen (pid -> psutil.Process, which knows its start time, so a reused pid
        #: is never mistaken for ours): what `stop` makes sure is gone.
        self._seen: dict[int, tuple[str, Any]] = {}
        self._stopped = False
        #: What stopping found left behind, for the report.
        self.leftovers: list[str] = []

    @classmethod
    async def start(cls, data_dir: Path, env: dict[str, str], log_path: Path, gateways: int | None = None) -> Topology:
        (data_dir / TOPOLOGY_FILE).unlink(missing_ok=True)  # the one of a previous start is stale
        topology = cls(free_port(), data_dir, env, log_path, gateways)
        # Spawned on this (the main) thread: the death signal follows the thread that forked.
        topology._process.spawn()
        topology.pid = topology._process.pid
        atexit.register(topology.stop_now)  # a bench that dies on an exception still cleans up
        try:
            await asyncio.to_thread(topology._process.wait_ready)
        except BaseException:
            await topology.stop()
            raise
        return topology

    def _ready(self) -> bool:
        """/healthz on the port answers and topology.json exists (written once all are ready)."""
        self._track_children()
        if (self.data_dir / TOPOLOGY_FILE).exists() and self._healthz():
            self.members()
            return True
        return False

    # ---- its processes --------------------------------------------------------------------

    def document(self) -> dict[str, Any]:
        with contextlib.suppress(OSError, ValueError):
            doc = json.loads((self.data_dir / TOPOLOGY_FILE).read_text())
            if isinstance(doc, dict):
                return doc
        return {}

    def processes(self) -> list[dict[str, Any]]:
        """topology.json's parley processes (what hopstats.scrape_all takes)."""
        return list(self.document().get("processes", []))

    def members(self) -> list[Member]:
        """The brokers and the parley processes, as topology.json names them now."""
        members = members_of(self.document())
        for m in members:
            self._remember(m.pid, m.name)
        return members

    def _remember(self, pid: int, name: str) -> Any:
        known = self._seen.get(pid)
        if known is not None:
            return known[1]
        if psutil is None:
            return None
        try:
            proc = psutil.Process(pid)
        except psutil.Error:
            return None
        self._seen[pid] = (name, proc)
        return proc

    def _track_children(self) -> None:
        """Whatever `parley up` runs now, listed or not yet (brokers start before topology.json)."""
        if psutil is None or self.pid is None:
            return
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.pid).children(recursive=True):
                self._remember(child.pid, " ".join(child.cmdline()[:4]) or str(child.pid))

    def snapshot(self) -> list[ProcSample]:
        out = []
        for member in self.members():
            proc = self._remember(member.pid, member.name)
            one = sample(proc, member) if proc is not None else None
            if one is not None:
                out.append(one)
        return out

    def rss(self) -> int | None:
        """The gateways' RSS, summed: what holds the sessions."""
        gateways = [s.rss for s in self.snapshot() if s.role == "gateway"]
        return sum(gateways) if gateways else None

    def cpu(self) -> tuple[float, float] | None:
        """(CPU seconds of every process, of the parley processes' main threads), summed."""
        samples = self.snapshot()
        if not samples:
            return None
        return (sum(s.cpu_s for s in samples),
                sum(s.main_cpu_s for s in samples if s.main_cpu_s is not None))

    # ---- stop -----------------------------------------------------------------------------

    async def stop(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.stop_now)

    def stop_now(self) -> list[str]:
        """SIGTERM `parley up` (it stops gateways, workers, brokers in turn), wait, then SIGKILL
        whatever is left of its process group and of every process it ever listed."""
        if self._stopped:
            return self.leftovers
        self._stopped = True
        with contextlib.suppress(Exception):
            self.members()
        self._track_children()
        code = self._process.stop()
        if code == -signal.SIGKILL:
            self._note(f"parley up (pid {self.pid}) did not stop within {STOP_TIMEOUT_S:.0f} s: SIGKILL")
        if code == -signal.SIGINT:
            # Stopped while starting, `parley up` leaves by KeyboardInterrupt, which Python
            # turns into an exit by SIGINT: its children were stopped all the same.
            self._note("parley up was stopped while starting (exit by SIGINT)")
        elif code not in (0, -signal.SIGTERM):
            self._note(f"parley up exited with {code}")
        for pid in _group_members(self.pid) if self.pid is not None else ():
            self._note(f"pid {pid} of parley up's process group was still running: SIGKILL")
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        for pid, (name, ps) in sorted(self._seen.items()):
            if _alive(ps):
                self._note(f"{name} (pid {pid}) was still running: SIGKILL")
                with contextlib.suppress(Exception):
                    ps.kill()
        return self.leftovers

    def _note(self, what: str) -> None:
        self.leftovers.append(what)
        log(f"cleanup: {what}")


def _alive(ps: Any) -> bool:
    if psutil is None or ps is None:
        return False
    try:
        return bool(ps.is_running()) and ps.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _group_members(pgid: int) -> list[int]:
    """Live processes (not zombies) of process group `pgid`."""
    if psutil is None:
        return []
    out = []
    for ps in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(ps.pid) == pgid and ps.status() != psutil.STATUS_ZOMBIE:
                out.append(ps.pid)
    return out
