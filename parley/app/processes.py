"""The one way Parley starts a child process: `parley up` (brokers, roles), the test fixtures and
the benchmark all do it here. A command runs with its env and a log file, dies with the process
that started it, is awaited until a readiness probe says yes (or it exits: then `ProcessFailed`
with the tail of its log), and stops with a signal, then SIGKILL after a bound. Stopped, it can
be started again with the same command line, so on the same port and data dir.

What "ready" means is the caller's: `http_ok` (a health URL answers 200) and `port_open` are the
usual probes.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

log = logging.getLogger("parley.app.processes")

PR_SET_PDEATHSIG = 1
#: How much of its log a process that failed to start shows in the error.
LOG_TAIL_LINES = 40

#: A readiness probe: True once the process serves; it must not raise for "not yet".
Probe = Callable[[], bool]


class ProcessFailed(RuntimeError):
    """A child process exited, or was not ready in time, while it was awaited."""


def die_with_parent() -> None:
    """In a child before exec: SIGTERM it when the thread that started it dies, even by SIGKILL,
    so no broker or role outlives `parley up` (or a test run, or a benchmark). Linux only."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str, timeout: float = 1.0) -> tuple[int, dict[str, object]]:
    """(status, JSON body) of a GET, error statuses included; OSError when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as err:
        with err:
            return err.code, json.loads(err.read() or b"{}")


def http_ok(url: str, accept: Callable[[dict[str, object]], bool] = lambda body: True) -> Probe:
    """Ready when `url` answers 200 with a JSON body that `accept` takes."""
    def probe() -> bool:
        try:
            status, body = get_json(url)
        except (OSError, ValueError):  # not listening yet, or not answering JSON yet
            return False
        return status == 200 and accept(body)
    return probe


def port_open(port: int) -> Probe:
    """Ready when 127.0.0.1:`port` accepts a connection (servers that listen once they serve)."""
    def probe() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        except OSError:
            return False
        return True
    return probe


class ChildProcess:
    """One command as a child process of this one.

    `own_session`: its own session and process group, so a Ctrl-C in the terminal reaches only
    this process, which stops its children in order. `signal_group`: stop signals go to that
    whole group (a server that forks helpers of its own).
    """

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, *, ready: Probe,
                 env: Mapping[str, str] | None = None, cwd: Path | None = None, own_session: bool = False,
                 signal_group: bool = False, ready_timeout_s: float = 60.0, stop_timeout_s: float = 10.0,
                 poll_s: float = 0.05) -> None:
        assert own_session or not signal_group, "a process group of its own is needed to signal it"
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._env = dict(env or {})
        self.cwd = cwd
        self.own_session = own_session
        self.signal_group = signal_group
        self.ready_timeout_s = ready_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._ready = ready
        self._poll_s = poll_s
        #: The running (or exited, not yet stopped) process; None before a start and after a stop.
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def spawn(self) -> None:
        """Start the command without waiting. Call it on the thread that lives as long as the
        child should: the death signal follows the thread that forks."""
        assert self.proc is None or self.proc.poll() is not None, f"{self.name} is already running"
        with open(self.log_path, "ab") as out:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env={**os.environ, **self._env}, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=self.own_session,
                                         preexec_fn=die_with_parent)

    def wait_ready(self, timeout: float | None = None) -> None:
        """Until the probe says ready; `ProcessFailed` if the process exits (or is stopped from
        another thread) first, or the time runs out."""
        proc = self.proc  # this one: a stop from another thread sets `self.proc` to None
        assert proc is not None, f"{self.name} was not started"
        limit = self.ready_timeout_s if timeout is None else timeout
        deadline = time.monotonic() + limit
        while True:
            if proc.poll() is not None:
                raise ProcessFailed(f"{self.name} exited with {proc.returncode}{self._tail()}")
            if self._ready():
                return
            if time.monotonic() >= deadline:
                raise ProcessFailed(f"{self.name} was not ready within {limit:.0f} s{self._tail()}")
            time.sleep(self._poll_s)

    def start(self, timeout: float | None = None) -> None:
        """Spawn, then wait until ready."""
        self.spawn()
        self.wait_ready(timeout)

    def exited(self) -> int | None:
        """The exit code once it has exited; None while it runs (or was never started)."""
        return None if self.proc is None else self.proc.poll()

    def send_signal(self, sig: int) -> None:
        """`sig` to the process (or its group), if it still runs."""
        if self.proc is None or self.proc.poll() is not None:
            return
        if self.signal_group:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
        else:
            self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float | None = None) -> int | None:
        """`sig` (SIGKILL for a kill -9), SIGKILL if it has not exited within the bound; its exit
        code, or None if it was not started."""
        if self.proc is None:
            return None
        limit = self.stop_timeout_s if timeout is None else timeout
        self.send_signal(signal.SIGCONT)  # a frozen process cannot act on the signal
        self.send_signal(sig)
        try:
            code = self.proc.wait(limit)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0f s: killed", self.name, limit)
            self.send_signal(signal.SIGKILL)
            code = self.proc.wait()
        self.proc = None
        return code

    def restart(self) -> None:
        """Stopped and started again with the same command line: the same port and data dir."""
        self.stop()
        self.start()

    def log(self) -> str:
        return _read(self.log_path)

    def _tail(self) -> str:
        lines = _read(self.log_path).splitlines()[-LOG_TAIL_LINES:]
        return f" (log {self.log_path}):\n" + "\n".join(lines) if lines else f" (log {self.log_path} is empty)"


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""
