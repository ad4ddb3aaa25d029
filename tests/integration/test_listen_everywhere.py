"""`--host '*'` (what the Kubernetes manifests use) listens on every interface, IPv4 and IPv6, so
the same manifests serve IPv4, IPv6 and dual-stack clusters."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from parley.app.processes import ChildProcess, free_port, http_ok

pytestmark = pytest.mark.integration


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 on this machine")
def test_star_listens_on_ipv4_and_ipv6(tmp_path: Path) -> None:
    port = free_port()
    proc = ChildProcess("parley dev", [sys.executable, "-m", "parley", "dev", "--host", "*", "--port", str(port),
                                       "--data-dir", str(tmp_path / "data")], tmp_path / "dev.log",
                        ready=http_ok(f"http://127.0.0.1:{port}/healthz"))
    proc.start()
    try:
        assert http_ok(f"http://[::1]:{port}/healthz")()
    finally:
        proc.stop()
