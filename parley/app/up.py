"""`parley up`: the scale-out topology on one machine, for people who want the real thing.

It starts the brokers from installed packages (tansu for Kafka, nats-server, redis-server),
then 2 chat-core and 2 delivery workers, then 2 gateways sharing one port (SO_REUSEPORT, so
clients land on either), each a `parley run ROLE` child process. `/healthz` on the port answers
once every role is ready. A child that dies is started again (as Kubernetes would); SIGTERM or
Ctrl-C stops the gateways first (clients are told 4009), then the workers, then the brokers.
Children are also told to stop if this process is killed outright.

The store is the shared SQLite file in the data dir. `topology.json` there appears once every
process is ready and names each (pid, port, log), for operators and for the fault tests.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from parley.auth import load_or_create_secret
from parley.app.localservers import ServerProcess, die_with_parent, free_port, kafka_server, nats_server, redis_server
from parley.config import Settings
from parley.app.roles import ensure_log_topics
from parley.app.stores import open_store

log = logging.getLogger("parley.app.up")

#: Processes per role; the gateways share the public port.
REPLICAS = {"chat-core": 2, "delivery": 2, "gateway": 2}
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
RESTART_BACKOFF_S = 1.0
LIVENESS_EVERY_S = 2.0


@dataclass
class Child:
    """One `parley run ROLE` process."""

    name: str
    role: str
    port: int
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = field(default=0.0)

    def start(self, data_dir: Path, host: str) -> None:
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "parley", "run", self.role, "--host", host, "--port", str(self.port),
                 "--data-dir", str(data_dir)],
                env={**os.environ, **self.env}, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=die_with_parent)
        self.started_at = time.monotonic()

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0f s: killed", self.name, timeout)
            self.proc.kill()
            self.proc.wait()


def _get(url: str, timeout: float = 1.0) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as err:
        with err:
            return err.code, json.loads(err.read() or b"{}")


class Topology:
    def __init__(self, host: str, port: int, data_dir: Path) -> None:
        self.host, self.port, self.data_dir = host, port, data_dir.resolve()
        self.logs = self.data_dir / "logs"
        self.brokers: dict[str, ServerProcess] = {}
        self.children: list[Child] = []
        self.stopping = False

    # ---- start ----------------------------------------------------------------------------

    def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "topology.json").unlink(missing_ok=True)  # written again once all are ready
        (self.logs / "redis").mkdir(exist_ok=True)
        self.brokers = {"kafka": kafka_server(self.logs), "nats": nats_server(self.logs),
                        "redis": redis_server(self.logs / "redis")}
        for name, broker in self.brokers.items():
            broker.start()
            log.info("%s listening on %s", name, broker.address)
        self._prepare()
        env = {
            "PARLEY_KAFKA_BOOTSTRAP": self.brokers["kafka"].address,
            "PARLEY_KAFKA_IDEMPOTENCE": "false",  # tansu cannot (see docs/operations.md)
            # tansu holds every fetch for the whole wait, even when records arrive meanwhile
            "PARLEY_KAFKA_FETCH_MAX_WAIT_MS": os.environ.get("PARLEY_KAFKA_FETCH_MAX_WAIT_MS", "100"),
            "PARLEY_NATS_URL": self.brokers["nats"].url,
            "PARLEY_REDIS_URL": self.brokers["redis"].url + "/0",
        }
        for role in ("chat-core", "delivery"):
            for n in range(1, REPLICAS[role] + 1):
                self.children.append(Child(f"{role}-{n}", role, free_port(), env, self.logs / f"{role}-{n}.log"))
        for n in range(1, REPLICAS["gateway"] + 1):
            self.children.append(Child(f"gateway-{n}", "gateway", self.port,
                                       {**env, "PARLEY_REUSE_PORT": "true", "PARLEY_GATEWAY_ID": f"gw-{n}"},
                                       self.logs / f"gateway-{n}.log"))
        # Workers first: a gateway that answers can be used at once. Each group starts together
        # (joining a consumer group takes seconds) and is waited for as a whole.
        for group in ([c for c in self.children if c.role != "gateway"], [c for c in self.children if c.role == "gateway"]):
            for child in group:
                child.start(self.data_dir, self.host)
            for child in group:
                self._wait_ready(child)
                log.info("%s ready (pid %d, port %d)", child.name, child.proc.pid if child.proc else 0, child.port)
        self._write_topology()

    def _prepare(self) -> None:
        """What the children would otherwise race to create: topics, the signing key, the schema."""
        load_or_create_secret(self.data_dir)

        async def setup() -> None:
            settings = Settings.from_env(data_dir=self.data_dir)
            await ensure_log_topics(settings, self.brokers["kafka"].address)
            store = await open_store(settings)
            await store.close()
        asyncio.run(setup())

    def _wait_ready(self, child: Child) -> None:
        """Its /readyz says ready; for a gateway on the shared port, the answer must be its own."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        want = child.env.get("PARLEY_GATEWAY_ID")
        while time.monotonic() < deadline:
            if self.stopping:
                raise KeyboardInterrupt("stopped while starting")
            code = child.exited()
            if code is not None:
                raise RuntimeError(f"{child.name} exited with {code}; see {child.log_path}")
            try:
                status, body = _get(f"http://{self.host}:{child.port}/readyz")
                if status == 200 and (want is None or body.get("id") == want):
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{child.name} not ready within {READY_TIMEOUT_S:.0f} s; see {child.log_path}")

    def _write_topology(self) -> None:
        doc = {
            "port": self.port, "data_dir": str(self.data_dir),
            "brokers": {name: {"address": b.address, "pid": b.proc.pid if b.proc else None}
                        for name, b in self.brokers.items()},
            "processes": [{"name": c.name, "role": c.role, "port": c.port, "pid": c.proc.pid if c.proc else None,
                           "restarts": c.restarts, "log": str(c.log_path)} for c in self.children],
        }
        tmp = self.data_dir / "topology.json.tmp"
        tmp.write_text(json.dumps(doc, indent=2))
        tmp.replace(self.data_dir / "topology.json")

    # ---- supervise ------------------------------------------------------------------------

    def watch(self) -> None:
        """Starts again whatever died, or reports its pipeline dead, until `stopping`."""
        next_probe = time.monotonic() + LIVENESS_EVERY_S
        while not self.stopping:
            changed = False
            for name, broker in self.brokers.items():
                if broker.proc is not None and broker.proc.poll() is not None and not self.stopping:
                    log.warning("%s exited with %s: starting it again", name, broker.proc.returncode)
                    broker.proc = None
                    broker.start()
                    if name == "kafka":  # tansu keeps nothing: the topics must be made again
                        self._prepare()
                    changed = True
            probe = time.monotonic() >= next_probe
            if probe:
                next_probe = time.monotonic() + LIVENESS_EVERY_S
            for child in self.children:
                code = child.exited()
                if code is None and probe and self._dead(child):
                    log.warning("%s is alive but its pipeline ended (/healthz 503): restarting it", child.name)
                    child.stop()
                    code = child.exited()
                if code is not None and not self.stopping:
                    log.warning("%s exited with %s: starting it again", child.name, code)
                    time.sleep(RESTART_BACKOFF_S)
                    child.restarts += 1
                    child.start(self.data_dir, self.host)
                    changed = True
            if changed:
                self._write_topology()
            time.sleep(0.2)

    def _dead(self, child: Child) -> bool:
        """The liveness probe Kubernetes would make: a worker whose `/healthz` answers 503. Not
        gateways: they share the client port, so a probe may reach the other one."""
        if child.role == "gateway" or self.stopping:
            return False
        try:
            status, _ = _get(f"http://{self.host}:{child.port}/healthz")
        except (OSError, ValueError):  # starting, or busy: the exit check covers a crash
            return False
        return status == 503

    def stop(self) -> None:
        self.stopping = True
        # Gateways first (clients hear 4009 and reconnect elsewhere), then the workers finish
        # what they took and leave their groups, then the brokers.
        for role in ("gateway", "chat-core", "delivery"):
            group = [c for c in self.children if c.role == role]
            for child in group:
                if child.proc is not None and child.proc.poll() is None:
                    child.proc.send_signal(signal.SIGTERM)
            for child in group:
                child.stop()
        for broker in reversed(list(self.brokers.values())):
            broker.stop()
        log.info("stopped")


def up(host: str, port: int, data_dir: Path) -> None:
    topology = Topology(host, port, data_dir)

    def on_signal(signum: int, _: object) -> None:
        topology.stopping = True
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        topology.start()
        log.info("parley up: http://%s:%d (topology in %s)", host, port, topology.data_dir / "topology.json")
        topology.watch()
    finally:
        topology.stop()
