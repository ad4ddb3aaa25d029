"""A restart of any role mid-call changes nothing a client sees: on `parley up`, chat-core killed
(kill -9) during an answered call and the calls role killed while a call rings; on `parley dev`,
the whole process killed in both states. The call state is the store's, its ring timers are armed
again from the store, and the clients' SDK reconnects."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from parley.sdk import Client, register
from tests.conftest import ParleyProcess
from tests.integration.test_access import event_where
from tests.integration.test_topology_faults import pid_of, restarted
from tests.livekit_standin import StandInThread

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RING_TIMEOUT_S = 8
T = TypeVar("T")
Restart = Callable[[], Awaitable[None]]


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory, livekit: StandInThread) -> Iterator[ParleyProcess]:
    proc = ParleyProcess(tmp_path_factory.mktemp("calls-up") / "data", mode="up",
                         env={**livekit.env, "PARLEY_CALL_RING_TIMEOUT_S": str(RING_TIMEOUT_S)})
    proc.start(timeout=120)
    yield proc
    proc.stop(timeout=60)


async def pair(base_url: str, tag: str) -> tuple[Client, Client, str, str]:
    """Two users' reconnecting clients and their direct conversation."""
    ann, bob = [await register(base_url, f"{tag}{n}_{os.getpid()}", "correct horse") for n in ("a", "b")]
    a = await Client.connect(base_url, ann.token, reconnect=True, max_reconnect_attempts=100)
    b = await Client.connect(base_url, bob.token, reconnect=True, max_reconnect_attempts=100)
    conv = (await a.request("conv.create", kind="direct", members=[bob.user_id]))["conv"]["id"]
    return a, b, conv, bob.user_id


async def retried(coro_fn: Callable[[], Awaitable[T]], timeout: float = 60) -> T:
    """A request that may meet the restart: retried (as the protocol asks) until answered."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            return await coro_fn()
        except Exception:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)


async def an_answered_call_survives(base_url: str, tag: str, restart: Restart) -> None:
    a, b, conv, bob = await pair(base_url, tag)
    call = (await a.call_start(conv))["call"]["id"]
    await b.call_join(call)
    await event_where(a, "call.accepted", call=call)
    await restart()
    again = await retried(lambda: b.call_join(call))  # bob's second device: still in the call
    assert again["call"]["state"] == "active" and again["call"]["participants"] == sorted(
        [a.user_id, bob])
    await retried(lambda: a.call_leave(call))
    ended = await event_where(b, "call.ended", call=call, timeout=30)
    assert ended["reason"] == "hangup"
    history = (await retried(lambda: a.request("history", conv=conv)))["messages"]
    assert [(m["kind"], m["call"]["reason"]) for m in history] == [("call", "hangup")]  # one record
    await a.close()
    await b.close()


async def a_ringing_call_is_still_missed(base_url: str, tag: str, restart: Restart) -> None:
    a, b, conv, _ = await pair(base_url, tag)
    call = (await a.call_start(conv))["call"]["id"]
    await event_where(b, "call.ringing", call=call)
    await restart()
    ended = await event_where(b, "call.ended", call=call, timeout=RING_TIMEOUT_S + 60)
    assert ended["reason"] == "missed"
    history = (await retried(lambda: b.request("history", conv=conv)))["messages"]
    assert [(m["kind"], m["call"]["missed"]) for m in history] == [("call", True)]
    await a.close()
    await b.close()


def killing(topology: ParleyProcess, *names: str) -> Restart:
    async def restart() -> None:
        pids = {name: pid_of(topology, name) for name in names}
        for pid in pids.values():
            os.kill(pid, signal.SIGKILL)
        for name, pid in pids.items():
            await restarted(topology, name, pid)
    return restart


async def test_up_chat_core_killed_during_an_answered_call(topology: ParleyProcess) -> None:
    await an_answered_call_survives(topology.base_url, "cck", killing(topology, "chat-core-1", "chat-core-2"))


async def test_up_the_calls_role_killed_while_a_call_rings(topology: ParleyProcess) -> None:
    await a_ringing_call_is_still_missed(topology.base_url, "clk", killing(topology, "calls-1"))


@pytest.fixture
def dev(tmp_path: Path, livekit: StandInThread) -> Iterator[ParleyProcess]:
    proc = ParleyProcess(tmp_path / "data", env={**livekit.env, "PARLEY_CALL_RING_TIMEOUT_S": str(RING_TIMEOUT_S)})
    proc.start()
    yield proc
    proc.stop(signal.SIGKILL)


def killing_dev(proc: ParleyProcess) -> Restart:
    async def restart() -> None:
        proc.stop(signal.SIGKILL)
        proc.start()
    return restart


async def test_dev_killed_during_an_answered_call(dev: ParleyProcess) -> None:
    await an_answered_call_survives(dev.base_url, "dvk", killing_dev(dev))


async def test_dev_killed_while_a_call_rings(dev: ParleyProcess) -> None:
    await a_ringing_call_is_still_missed(dev.base_url, "dvr", killing_dev(dev))
