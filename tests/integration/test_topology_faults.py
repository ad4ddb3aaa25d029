"""Faults under load on `parley up` (2 gateways, 2 chat-core, 2 delivery; tansu, nats-server,
redis): a process killed, a broker restarted or frozen, while clients keep sending.

Every test asserts the same end state: each acknowledged message is stored exactly once at the
seq it was acknowledged with, seqs are dense, and a reading client that syncs holds them all.
Clients do what the protocol asks of them: resend with the same cmid after `unavailable`, a
timeout or a dropped connection (the SDK's reconnect resends sends itself).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from parley.errors import ParleyError
from parley.sdk import Client, register
from tests.conftest import ParleyProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONVS = 4  # spread over partitions, so both chat-core consumers own some
WRITERS = 3
WINDOW = 4  # sends in flight per writer
#: No send may wait longer than this for an answer: the gateway answers `unavailable` first.
ATTEMPT_BOUND_S = 15.0


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ParleyProcess]:
    proc = ParleyProcess(tmp_path_factory.mktemp("up") / "data", mode="up", env={"PARLEY_SEND_BURST": "1000000"})
    proc.start(timeout=120)
    yield proc
    proc.stop(timeout=60)


def pid_of(topology: ParleyProcess, name: str) -> int:
    doc = topology.topology()
    for proc in doc["processes"]:
        if proc["name"] == name:
            return int(proc["pid"])
    return int(doc["brokers"][name]["pid"])


@dataclass
class Load:
    """Writers sending to a few conversations until stopped; every send retried with its cmid."""

    base_url: str
    convs: list[str]
    tokens: list[str]
    acked: dict[str, tuple[str, int]] = field(default_factory=dict)  # cmid -> (conv, seq)
    errors: dict[str, int] = field(default_factory=dict)
    retry_after_seen: list[int] = field(default_factory=list)
    longest_attempt_s: float = 0.0
    reconnects: int = 0
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self._writer(i, token)) for i, token in enumerate(self.tokens)]

    async def _writer(self, index: int, token: str) -> None:
        client = await Client.connect(self.base_url, token, reconnect=True, max_reconnect_attempts=100)
        n = 0
        try:
            while not self.stop.is_set():
                batch = [(self.convs[(n + i) % len(self.convs)], f"w{index}-{n + i}") for i in range(WINDOW)]
                n += WINDOW
                await asyncio.gather(*(self._send(client, conv, cmid) for conv, cmid in batch))
        finally:
            self.reconnects += client.reconnects
            await client.close()

    async def _send(self, client: Client, conv: str, cmid: str) -> None:
        while True:
            started = time.monotonic()
            try:
                ack = await client.send(conv, cmid, cmid=cmid, timeout=ATTEMPT_BOUND_S + 5)
            except ParleyError as err:
                self.errors[err.code] = self.errors.get(err.code, 0) + 1
                if err.code not in ("unavailable", "rate_limited", "internal"):
                    raise
                if err.retry_after_ms is not None:
                    self.retry_after_seen.append(err.retry_after_ms)
                await asyncio.sleep(min((err.retry_after_ms or 500) / 1000, 2.0))
                continue
            except TimeoutError:
                self.errors["timeout"] = self.errors.get("timeout", 0) + 1
                continue
            finally:
                self.longest_attempt_s = max(self.longest_attempt_s, time.monotonic() - started)
            self.acked[cmid] = (conv, ack["seq"])
            return

    async def until_acked(self, more: int, timeout: float = 90.0) -> None:
        target = len(self.acked) + more
        deadline = time.monotonic() + timeout
        while len(self.acked) < target:
            assert time.monotonic() < deadline, f"only {len(self.acked)} of {target} acked; errors {self.errors}"
            await asyncio.sleep(0.1)

    async def finish(self) -> None:
        """Stops new sends and waits for those in flight to be acknowledged."""
        self.stop.set()
        await asyncio.wait_for(asyncio.gather(*self.tasks), 120)


async def setup(topology: ParleyProcess, tag: str) -> tuple[Load, Client]:
    users = [await register(topology.base_url, f"{tag}{i}_{time.monotonic_ns() % 10**6}", "correct horse")
             for i in range(WRITERS + 1)]
    owner = await Client.connect(topology.base_url, users[0].token)
    members = [u.user_id for u in users[1:]]
    convs = [(await owner.request("conv.create", kind="group", members=members))["conv"]["id"] for _ in range(CONVS)]
    await owner.close()
    reader = await Client.connect(topology.base_url, users[-1].token, reconnect=True, max_reconnect_attempts=100)
    load = Load(topology.base_url, convs, [u.token for u in users[:WRITERS]])
    load.start()
    return load, reader


async def assert_nothing_lost(topology: ParleyProcess, load: Load, reader: Client) -> None:
    await load.finish()
    by_conv: dict[str, dict[int, str]] = {conv: {} for conv in load.convs}
    for cmid, (conv, seq) in load.acked.items():
        assert seq not in by_conv[conv], f"{conv} seq {seq} acknowledged twice ({by_conv[conv][seq]}, {cmid})"
        by_conv[conv][seq] = cmid

    checker = await Client.connect(topology.base_url, load.tokens[0])
    try:
        for conv, acked in by_conv.items():
            stored: list[dict] = []
            after = 0
            while page := (await checker.request("history", conv=conv, after=after, limit=200))["messages"]:
                stored.extend(page)
                after = page[-1]["seq"]
            seqs = [m["seq"] for m in stored]
            assert seqs == list(range(1, len(seqs) + 1)), f"{conv}: seqs not dense"
            cmids = [m["cmid"] for m in stored]
            assert len(cmids) == len(set(cmids)), f"{conv}: a message stored twice"
            at = {m["seq"]: m["cmid"] for m in stored}
            lost = {seq: cmid for seq, cmid in acked.items() if at.get(seq) != cmid}
            assert not lost, f"{conv}: acknowledged but not stored at their seq: {lost}"
    finally:
        await checker.close()

    heads = {conv: max(acked, default=0) for conv, acked in by_conv.items()}
    deadline = time.monotonic() + 60
    while any(reader.last_seq.get(conv, 0) < head for conv, head in heads.items()):
        assert time.monotonic() < deadline, f"reader holds {reader.last_seq}, heads {heads}"
        await reader.sync()
    await reader.close()


async def run_fault(topology: ParleyProcess, tag: str, fault: Callable[[], object], before: int = 150,
                    after: int = 150) -> Load:
    load, reader = await setup(topology, tag)
    await load.until_acked(before)
    result = fault()
    if asyncio.iscoroutine(result):
        await result
    await load.until_acked(after)  # service resumed on its own
    await assert_nothing_lost(topology, load, reader)
    assert load.longest_attempt_s < ATTEMPT_BOUND_S + 5, load.longest_attempt_s
    return load


async def restarted(topology: ParleyProcess, name: str, old_pid: int, timeout: float = 30) -> None:
    """`parley up` started it again (as Kubernetes would)."""
    deadline = time.monotonic() + timeout
    while pid_of(topology, name) == old_pid:
        assert time.monotonic() < deadline, f"{name} was not started again"
        await asyncio.sleep(0.1)


def killer(topology: ParleyProcess, name: str, sig: int = signal.SIGKILL) -> Callable[[], object]:
    async def fault() -> None:
        pid = pid_of(topology, name)
        os.kill(pid, sig)
        await restarted(topology, name, pid)
    return fault


async def test_kill_9_a_chat_core_consumer(topology: ParleyProcess) -> None:
    await run_fault(topology, "cc", killer(topology, "chat-core-1"))


async def test_kill_9_a_gateway_then_the_other(topology: ParleyProcess) -> None:
    first, second = killer(topology, "gateway-1"), killer(topology, "gateway-2")

    async def both() -> None:
        await first()
        await asyncio.sleep(2)
        await second()
    load = await run_fault(topology, "gw", both)
    # Every writer was on one of them: each reconnected (to the other gateway, the one port's
    # only listener then) and resent what was in flight with the same cmids.
    assert load.reconnects >= WRITERS, load.reconnects


async def test_restart_nats_server(topology: ParleyProcess) -> None:
    await run_fault(topology, "nats", killer(topology, "nats", signal.SIGTERM))


async def test_restart_redis_server(topology: ParleyProcess) -> None:
    # It comes back empty (no persistence): gateways register their sessions again.
    await run_fault(topology, "redis", killer(topology, "redis", signal.SIGTERM))


async def test_freeze_the_kafka_broker_for_10_s(topology: ParleyProcess) -> None:
    pid = pid_of(topology, "kafka")
    load, reader = await setup(topology, "kafka")
    await load.until_acked(150)
    os.kill(pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(1)  # the writers' windows are stuck on replies by now
        # A send made while the broker hangs is answered, not left hanging: the gateway's publish
        # gives up within its bound and says when to retry.
        probe = await Client.connect(topology.base_url, load.tokens[0])
        started = time.monotonic()
        with pytest.raises(ParleyError) as answer:
            await probe.send(load.convs[0], "during the freeze", cmid="probe", timeout=ATTEMPT_BOUND_S)
        waited = time.monotonic() - started
        await probe.close()
        await asyncio.sleep(max(0.0, 9 - waited))
    finally:
        os.kill(pid, signal.SIGCONT)
    assert answer.value.code == "unavailable" and answer.value.retry_after_ms, answer.value
    assert waited < 8, waited
    await load.until_acked(150)  # service resumed on its own
    await assert_nothing_lost(topology, load, reader)
    assert load.longest_attempt_s < ATTEMPT_BOUND_S + 5, load.longest_attempt_s


def test_stopping_parley_up_leaves_no_process_behind(tmp_path: Path) -> None:
    proc = ParleyProcess(tmp_path / "data", mode="up")
    proc.start(timeout=120)
    doc = proc.topology()
    pids = [p["pid"] for p in doc["processes"]] + [b["pid"] for b in doc["brokers"].values()]
    assert len(pids) == 9
    assert proc.stop(signal.SIGTERM, timeout=60) == 0
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in pids):
        assert time.monotonic() < deadline, [pid for pid in pids if Path(f"/proc/{pid}").exists()]
        time.sleep(0.1)
