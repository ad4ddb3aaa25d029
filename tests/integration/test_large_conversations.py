"""Large conversations end to end, over real WebSockets, on `parley dev` (the in-process bus) and
`parley up` (NATS, 2 gateways) with a threshold of 3 members: every session of every member gets
each message exactly once, a kicked member hears nothing more, an invited one starts hearing it."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator

import pytest

from parley.sdk import Account, Client, register
from tests.conftest import MODES, ParleyProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=MODES)
def large(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ParleyProcess]:
    proc = ParleyProcess(tmp_path_factory.mktemp(f"large-{request.param}") / "data", mode=request.param,
                         env={"PARLEY_CONV_SUBJECT_MIN_MEMBERS": "3"})
    proc.start(timeout=120)
    yield proc
    proc.stop(timeout=60)
    if "Traceback" in proc.log():
        pytest.fail(f"the server logged a traceback:\n{proc.log()}")


async def users(server: ParleyProcess, n: int) -> list[Account]:
    stamp = f"{os.getpid()}_{time.monotonic_ns() % 10**9}"
    return [await register(server.base_url, f"big{stamp}_{i}", "correct horse") for i in range(n)]


async def texts(client: Client, conv: str, n: int) -> list[str]:
    return [(await client.next_event("message.new", conv=conv, timeout=10))["message"]["text"] for _ in range(n)]


async def nothing_more(client: Client, conv: str) -> None:
    with pytest.raises(TimeoutError):
        await client.next_event("message.new", conv=conv, timeout=0.5)


async def test_a_large_conversation_reaches_every_session_once_and_follows_kicks_and_invites(large: ParleyProcess):
    owner, m1, m2, late = await users(large, 4)
    clients = [await Client.connect(large.base_url, a.token) for a in (owner, m1, m1, m2)]  # m1 twice
    o, a1, a2, b = clients
    conv = (await o.request("conv.create", kind="channel", title="big",
                            members=[m1.user_id, m2.user_id]))["conv"]["id"]
    try:
        # Created large: each gateway follows its subject for the members it holds, then tells
        # them to sync what was published before it followed (here: nothing yet).
        for client in clients:
            await client.next_event("resync", conv=conv, timeout=10)
        sent = [f"m{i}" for i in range(10)]
        for text in sent:
            await o.send(conv, text)
        for client in clients:
            assert await texts(client, conv, 10) == sent
        for client in clients:
            await nothing_more(client, conv)

        await o.request("member.kick", conv=conv, user=m2.user_id)
        await b.next_event("member.left", conv=conv, timeout=10)
        await o.send(conv, "after the kick")
        assert await texts(a1, conv, 1) == ["after the kick"]
        await nothing_more(b, conv)

        c = await Client.connect(large.base_url, late.token)
        clients.append(c)
        await o.request("conv.invite", conv=conv, users=[late.user_id])
        # Its gateway follows the conversation for it, then tells it to sync what it may have missed.
        await c.next_event("resync", conv=conv, timeout=10)
        await o.send(conv, "after the invite")
        assert await texts(c, conv, 1) == ["after the invite"]
        assert await texts(a2, conv, 2) == ["after the kick", "after the invite"]
        await nothing_more(c, conv)
    finally:
        await asyncio.gather(*(client.close() for client in clients))
