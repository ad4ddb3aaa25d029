"""The one process launcher (parley.app.processes): started with its env and log, awaited until
ready or failed with its log's tail, stopped with SIGTERM then SIGKILL, restarted the same way,
and never outliving the process that started it."""

from __future__ import annotations

import http.server
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from parley.app.processes import ChildProcess, ProcessFailed, free_port, http_ok, port_open

ROOT = Path(__file__).resolve().parents[2]


def python(tmp_path: Path, code: str, **options: Any) -> ChildProcess:
    """A child running `code`; ready once it has written `ready` into its log."""
    log_path = tmp_path / "child.log"
    options.setdefault("ready", lambda: "ready" in log_path.read_text())
    return ChildProcess("child", [sys.executable, "-u", "-c", textwrap.dedent(code)], log_path,
                        ready_timeout_s=10.0, **options)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie has exited: its parent has not reaped it yet
        return stat.read().rpartition(")")[2].split()[0] != "Z"


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_a_started_process_has_its_env_and_writes_its_log(tmp_path: Path) -> None:
    child = python(tmp_path, """
        import os, time
        print(os.environ["GREETING"], "ready", flush=True)
        time.sleep(60)
    """, env={"GREETING": "hello"})
    child.start()
    try:
        assert "hello ready" in child.log()
        assert child.exited() is None
    finally:
        assert child.stop() == -signal.SIGTERM
    assert child.proc is None


def test_a_process_that_exits_before_it_is_ready_fails_with_the_tail_of_its_log(tmp_path: Path) -> None:
    child = python(tmp_path, """
        import sys
        for i in range(100):
            print("line", i)
        sys.exit(3)
    """)
    with pytest.raises(ProcessFailed) as failed:
        child.start()
    message = str(failed.value)
    assert "child exited with 3" in message
    assert "line 99" in message and "line 59" not in message  # the tail, not the whole log


def test_a_process_never_ready_fails_after_the_bound(tmp_path: Path) -> None:
    child = python(tmp_path, "import time; print('starting', flush=True); time.sleep(60)", ready=lambda: False)
    started = time.monotonic()
    try:
        with pytest.raises(ProcessFailed, match="not ready within 1 s"):
            child.start(timeout=1.0)
        assert time.monotonic() - started < 5
    finally:
        child.stop()


def test_a_process_that_ignores_sigterm_is_killed_after_the_stop_bound(tmp_path: Path) -> None:
    child = python(tmp_path, """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ready", flush=True)
        time.sleep(60)
    """, stop_timeout_s=0.5)
    child.start()
    pid = child.pid
    assert pid is not None
    assert child.stop() == -signal.SIGKILL
    assert not alive(pid)


def test_a_frozen_process_still_stops_on_sigterm(tmp_path: Path) -> None:
    child = python(tmp_path, "import time; print('ready', flush=True); time.sleep(60)", stop_timeout_s=5.0)
    child.start()
    child.send_signal(signal.SIGSTOP)
    assert child.stop() == -signal.SIGTERM


def test_kill_9_then_a_restart_runs_the_same_command_again(tmp_path: Path) -> None:
    child = python(tmp_path, "import os, time; print('ready', os.getpid(), flush=True); time.sleep(60)")
    child.start()
    first = child.pid
    assert child.stop(signal.SIGKILL) == -signal.SIGKILL
    child.start()
    try:
        assert child.pid != first
        # The log is appended to, not truncated.
        assert wait_until(lambda: child.log().count("ready") == 2)
    finally:
        child.stop()


def test_restart_stops_and_starts_on_the_same_port(tmp_path: Path) -> None:
    port = free_port()
    child = python(tmp_path, f"""
        import socket, time
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", {port})); s.listen()
        time.sleep(60)
    """, ready=port_open(port))
    child.start()
    first = child.pid
    child.restart()
    try:
        assert child.pid != first and port_open(port)()
    finally:
        child.stop()
    assert not port_open(port)()


def test_a_stop_reaches_the_whole_group_when_asked(tmp_path: Path) -> None:
    child = python(tmp_path, """
        import subprocess, sys, time
        helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        print("ready", helper.pid, flush=True)
        time.sleep(60)
    """, own_session=True, signal_group=True)
    child.start()
    helper = int(child.log().split()[-1])
    child.stop()
    assert wait_until(lambda: not alive(helper))


def test_a_child_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    """Even when that process is killed outright (no chance to stop anything)."""
    starter = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from parley.app.processes import ChildProcess
        child = ChildProcess("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"],
                             Path({str(tmp_path / "sleeper.log")!r}), ready=lambda: True, own_session=True)
        child.start()
        print(child.pid, flush=True)
        time.sleep(60)
    """)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert starter.stdout is not None
    with starter.stdout:
        try:
            grandchild = int(starter.stdout.readline())
            assert alive(grandchild)
        finally:
            starter.kill()
            starter.wait()
    assert wait_until(lambda: not alive(grandchild))


@pytest.fixture
def health_server() -> Iterator[tuple[str, list[tuple[int, bytes]]]]:
    """A /healthz answering whatever the test puts at the front of the list."""
    answers: list[tuple[int, bytes]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = answers[0]
            self.send_response(status)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/healthz", answers
    server.shutdown()
    server.server_close()


def test_http_ok_is_ready_on_a_200_whose_body_is_accepted(health_server: tuple[str, list[tuple[int, bytes]]]) -> None:
    url, answers = health_server
    mine = http_ok(url, accept=lambda body: body.get("id") == "gw-1")
    answers[:] = [(503, b'{"id": "gw-1"}')]
    assert not mine()
    answers[:] = [(200, b'{"id": "gw-2"}')]
    assert not mine()  # another process on the shared port answered
    answers[:] = [(200, b'{"id": "gw-1"}')]
    assert mine()
    assert not http_ok(f"http://127.0.0.1:{free_port()}/healthz")()  # nothing listens
