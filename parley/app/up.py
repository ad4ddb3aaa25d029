"""`parley up`: the scale-out topology on one machine, for people who want the real thing.

It starts the brokers from installed packages (tansu for Kafka, nats-server, redis-server),
then 2 chat-core and 2 delivery workers (and, when a LiveKit is configured, the calls role, and
a push worker when push is configured), then 2 gateways (`--gateways N` for more) sharing one
port (SO_REUSEPORT, so clients land on any), each a `parley run ROLE` child process. `/healthz` on the port answers
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
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from parley.auth import load_or_create_secret
from parley.app.localservers import ServerProcess, kafka_server, nats_server, redis_server
from parley.app.processes import ChildProcess, free_port, get_json, http_ok
from calls.join import JoinMinter
from parley.config import Settings
from parley.app.roles import ensure_log_topics
from parley.app.stores import open_store

log = logging.getLogger("parley.app.up")

#: Processes per role; the gateways share the public port. The calls role runs only with a
#: LiveKit, the push role only when a push provider is configured (PARLEY_FCM_CREDENTIALS or
#: PARLEY_APNS_*).
REPLICAS = {"chat-core": 2, "delivery": 2, "calls": 1, "push": 1, "gateway": 2}
WORKERS = ("chat-core", "delivery", "calls", "push")
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
RESTART_BACKOFF_S = 1.0
LIVENESS_EVERY_S = 2.0


@dataclass
class Child:
    """One `parley run ROLE` process of the topology."""

    role: str
    port: int
    process: ChildProcess
    restarts: int = 0
    #: Where Prometheus scrapes it: gateways share `port`, so each gets one of its own.
    metrics_port: int = 0

    @property
    def name(self) -> str:
        return self.process.name


class Topology:
    def __init__(self, host: str, port: int, data_dir: Path, gateways: int = REPLICAS["gateway"]) -> None:
        self.host, self.port, self.data_dir = host, port, data_dir.resolve()
        #: More than 2 when one machine must hold more sessions than 2 processes' open files allow.
        self.gateways = gateways
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
        settings = Settings.from_env()
        wanted = {"chat-core": True, "delivery": True, "calls": JoinMinter.from_settings(settings) is not None,
                  "push": settings.push_configured}
        for role in (role for role in WORKERS if wanted[role]):
            for n in range(1, REPLICAS[role] + 1):
                self.children.append(self._child(f"{role}-{n}", role, free_port(), env))
        for n in range(1, self.gateways + 1):
            metrics_port = free_port()
            gateway = self._child(f"gateway-{n}", "gateway", self.port, {
                **env, "PARLEY_REUSE_PORT": "true", "PARLEY_GATEWAY_ID": f"gw-{n}",
                "PARLEY_METRICS_PORT": str(metrics_port)})
            gateway.metrics_port = metrics_port
            self.children.append(gateway)
        # Workers first: a gateway that answers can be used at once. Each group starts together
        # (joining a consumer group takes seconds) and is waited for as a whole.
        for group in ([c for c in self.children if c.role != "gateway"], [c for c in self.children if c.role == "gateway"]):
            for child in group:
                child.process.spawn()
            for child in group:
                child.process.wait_ready()
                log.info("%s ready (pid %d, port %d)", child.name, child.process.pid or 0, child.port)
        self._write_topology()

    def _child(self, name: str, role: str, port: int, env: dict[str, str]) -> Child:
        """Ready when its /readyz says so; for a gateway on the shared port, the answer must be
        its own."""
        gateway_id = env.get("PARLEY_GATEWAY_ID")
        readyz = http_ok(f"http://{self.host}:{port}/readyz",
                         accept=lambda body: gateway_id is None or body.get("id") == gateway_id)

        def ready() -> bool:
            if self.stopping:
                raise KeyboardInterrupt("stopped while starting")
            return readyz()

        argv = [sys.executable, "-m", "parley", "run", role, "--host", self.host, "--port", str(port),
                "--data-dir", str(self.data_dir)]
        return Child(role, port, ChildProcess(name, argv, self.logs / f"{name}.log", ready=ready, env=env,
                                              own_session=True, ready_timeout_s=READY_TIMEOUT_S,
                                              stop_timeout_s=STOP_TIMEOUT_S, poll_s=0.1))

    def _prepare(self) -> None:
        """What the children would otherwise race to create: topics, the signing key, the schema."""
        load_or_create_secret(self.data_dir)

        async def setup() -> None:
            settings = Settings.from_env(data_dir=self.data_dir)
            await ensure_log_topics(settings, self.brokers["kafka"].address)
            store = await open_store(settings)
            await store.close()
        asyncio.run(setup())

    def _write_topology(self) -> None:
        doc = {
            "port": self.port, "data_dir": str(self.data_dir),
            "brokers": {name: {"address": b.address, "pid": b.pid}
                        for name, b in self.brokers.items()},
            "processes": [{"name": c.name, "role": c.role, "port": c.port, "metrics_port": c.metrics_port or c.port,
                           "pid": c.process.pid,
                           "restarts": c.restarts, "log": str(c.process.log_path)} for c in self.children],
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
                code = broker.exited()
                if code is not None and not self.stopping:
                    log.warning("%s exited with %s: starting it again", name, code)
                    broker.start()
                    if name == "kafka":  # tansu keeps nothing: the topics must be made again
                        self._prepare()
                    changed = True
            probe = time.monotonic() >= next_probe
            if probe:
                next_probe = time.monotonic() + LIVENESS_EVERY_S
            for child in self.children:
                code = child.process.exited()
                if code is None and probe and self._dead(child):
                    log.warning("%s is alive but its pipeline ended (/healthz 503): restarting it", child.name)
                    code = child.process.stop()
                if code is not None and not self.stopping:
                    log.warning("%s exited with %s: starting it again", child.name, code)
                    time.sleep(RESTART_BACKOFF_S)
                    child.restarts += 1
                    child.process.spawn()
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
            status, _ = get_json(f"http://{self.host}:{child.port}/healthz")
        except (OSError, ValueError):  # starting, or busy: the exit check covers a crash
            return False
        return status == 503

    def stop(self) -> None:
        self.stopping = True
        # Gateways first (clients hear 4009 and reconnect elsewhere), then the workers finish
        # what they took and leave their groups, then the brokers.
        for role in ("gateway", *WORKERS):
            group = [c for c in self.children if c.role == role]
            for child in group:
                child.process.send_signal(signal.SIGTERM)
            for child in group:
                child.process.stop()
        for broker in reversed(list(self.brokers.values())):
            broker.stop()
        log.info("stopped")


def up(host: str, port: int, data_dir: Path, gateways: int | None = None) -> None:
    topology = Topology(host, port, data_dir, gateways or REPLICAS["gateway"])

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
