"""The SDK's promise against a real server: reconnect, catch up with `sync`, resend safely."""

from __future__ import annotations

import asyncio
import signal

import pytest

from parley.sdk import Client, register

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_a_reconnecting_client_catches_up_on_what_it_missed_during_a_restart(fresh_server):
    srv = fresh_server()
    alice = await register(srv.base_url, "alice", "correct horse")
    bob = await register(srv.base_url, "bob", "correct horse")
    b = await Client.connect(srv.base_url, bob.token, reconnect=True)
    a = await Client.connect(srv.base_url, alice.token)
    conv = (await a.request("conv.create", kind="direct", members=[bob.user_id]))["conv"]["id"]
    await a.send(conv, "one")
    assert (await b.next_event("message.new", conv=conv))["message"]["text"] == "one"
    await b.sync()  # the watermark now holds seq 1

    srv.stop(signal.SIGKILL)
    await a.close()
    srv.start()
    a = await Client.connect(srv.base_url, alice.token)
    for text in ("two", "three"):  # sent while bob's client is still reconnecting
        await a.send(conv, text)
    texts = [(await b.next_event("message.new", conv=conv, timeout=15))["message"]["text"] for _ in range(2)]
    assert texts == ["two", "three"]
    assert b.reconnects >= 1
    assert (await b.send(conv, "back"))["seq"] == 4
    await asyncio.gather(a.close(), b.close())


async def test_a_send_in_flight_during_a_restart_is_stored_exactly_once(fresh_server):
    srv = fresh_server()
    alice = await register(srv.base_url, "alice", "correct horse")
    a = await Client.connect(srv.base_url, alice.token, reconnect=True)
    conv = (await a.request("conv.create", kind="group", members=[]))["conv"]["id"]
    sends = [asyncio.create_task(a.send(conv, f"m{i}", cmid=f"c{i}", timeout=30)) for i in range(50)]
    await asyncio.sleep(0.01)
    srv.stop(signal.SIGKILL)
    srv.start()
    acks = await asyncio.gather(*sends)
    seqs = sorted(ack["seq"] for ack in acks)
    assert seqs == list(range(1, 51))
    history = (await a.request("history", conv=conv, limit=200))["messages"]
    assert sorted(m["cmid"] for m in history) == sorted(f"c{i}" for i in range(50))
    await a.close()
