"""Session fixture: a real coturn (Debian's `turnserver`, installed by `make servers`, which
`make test` runs) on loopback, with `use-auth-secret`: it accepts exactly the REST-scheme
credentials calls/turn.py mints with the same secret. Tests import it explicitly:

    from tests.turn_server import TurnServer, turn_server  # noqa: F401
"""

from __future__ import annotations

import random
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from parley.app.localservers import ServerProcess

__all__ = ["TurnServer", "turn_server"]

#: Relay ports come from below Linux's ephemeral range (32768+), where nothing else picks ports.
RELAY_PORTS = 40


@dataclass(frozen=True)
class TurnServer:
    process: ServerProcess
    secret: str
    realm: str

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.process.port)


@pytest.fixture(scope="session")
def turn_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TurnServer]:
    binary = shutil.which("turnserver")
    if binary is None:
        pytest.fail("turnserver is missing: install Debian's coturn (`make servers`; `make test` does it)",
                    pytrace=False)
    home = tmp_path_factory.mktemp("coturn")
    secret, realm = secrets.token_hex(16), "parley.test"
    relay_from = random.randrange(20_000, 32_000 - RELAY_PORTS)

    def argv(port: int) -> list[str]:
        return [binary, "-n", "--listening-ip=127.0.0.1", f"--listening-port={port}", "--relay-ip=127.0.0.1",
                f"--min-port={relay_from}", f"--max-port={relay_from + RELAY_PORTS - 1}",
                "--use-auth-secret", f"--static-auth-secret={secret}", f"--realm={realm}",
                "--no-tls", "--no-dtls", "--no-cli", "--no-rfc5780", "--log-file=stdout",
                f"--pidfile={home / 'turnserver.pid'}", f"--userdb={home / 'turndb'}",
                # the test's peer is on loopback too: coturn refuses to relay there by default
                "--allow-loopback-peers"]

    server = ServerProcess("turn", argv, home / "turnserver.log")
    server.start()
    yield TurnServer(server, secret, realm)
    server.stop()
