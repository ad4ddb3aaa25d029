"""The NATS fan-out bus against a real nats-server: addressing, conversation interest,
restarts, bad input and the bounded publish buffer."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import msgspec
import nats
import pytest

from parley import topics
from parley.adapters.nats_bus import NatsBus
from parley.errors import Unavailable
from parley.ports import Broadcast, Deliver, GatewayMessage, Reply
from parley.app.processes import free_port
from tests.nats_redis_servers import ServerProcess, nats_server  # noqa: F401

pytestmark = pytest.mark.integration
_ids = itertools.count()


def unique(name: str) -> str:
    """Names of this test only: the server is shared by the whole session."""
    return f"{name}-{time.monotonic_ns()}-{next(_ids)}"


class Inbox:
    """What one gateway's handler was called with, in order."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[GatewayMessage] = asyncio.Queue()

    def handle(self, msg: GatewayMessage) -> None:
        self.queue.put_nowait(msg)

    async def next(self, timeout: float = 5.0) -> GatewayMessage:
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def only_until(self, sentinel: GatewayMessage) -> list[GatewayMessage]:
        """Everything received up to `sentinel`, and nothing after it for a moment. A sentinel
        published later by the same connection arrives later; the pause lets callbacks that
        nats-py already queued run."""
        got = []
        while (msg := await self.next()) != sentinel:
            got.append(msg)
        await asyncio.sleep(0.05)
        assert self.queue.empty(), f"unexpected after the sentinel: {self.queue.get_nowait()}"
        return got


Connect = Callable[..., Awaitable[NatsBus]]


@pytest.fixture
async def connect(nats_server: ServerProcess) -> AsyncIterator[Connect]:  # noqa: F811
    buses: list[NatsBus] = []

    async def make(**options: int) -> NatsBus:
        bus = await NatsBus.connect(nats_server.url, name=unique("test"), **options)
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        await bus.close()


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def deliver(text: str) -> Deliver:
    return Deliver(users=["u1", "u2"], frame=text.encode())


def broadcast(conv: str, text: str) -> Broadcast:
    return Broadcast(conv=conv, frame=text.encode())


async def test_a_deliver_and_a_reply_reach_only_the_addressed_gateway(connect: Connect) -> None:
    delivery, gw_a, gw_b = await connect(), await connect(), await connect()
    a, b = Inbox(), Inbox()
    id_a, id_b = unique("gw-a"), unique("gw-b")
    await gw_a.serve_gateway(id_a, a.handle)
    await gw_b.serve_gateway(id_b, b.handle)

    event, reply = deliver("event"), Reply(session="s1", rid="r1", frame=b'{"ok":true}')
    await delivery.to_gateway(id_a, event)
    await delivery.to_gateway(id_a, reply)
    sentinel = deliver("for b")
    await delivery.to_gateway(id_b, sentinel)

    assert [await a.next(), await a.next()] == [event, reply]  # decoded back to the same types
    assert await b.only_until(sentinel) == []


async def test_a_conversation_reaches_a_gateway_only_while_it_holds_a_member(connect: Connect) -> None:
    delivery, gateway = await connect(), await connect()
    got, gw_id, conv = Inbox(), unique("gw"), unique("conv")
    inbox = await gateway.serve_gateway(gw_id, got.handle)

    await delivery.publish_conv(conv, broadcast(conv, "before anyone joined"))
    await delivery.to_gateway(gw_id, sentinel := deliver("sentinel 1"))
    assert await got.only_until(sentinel) == []

    await inbox.join_conv(conv)  # two members' sessions
    await inbox.join_conv(conv)
    await delivery.publish_conv(conv, first := broadcast(conv, "two members"))
    assert await got.next() == first

    await inbox.leave_conv(conv)  # one left: still interested
    await delivery.publish_conv(conv, second := broadcast(conv, "one member"))
    assert await got.next() == second

    await inbox.leave_conv(conv)  # the last left: unsubscribed
    await delivery.publish_conv(conv, broadcast(conv, "no member"))
    await delivery.to_gateway(gw_id, sentinel := deliver("sentinel 2"))
    assert await got.only_until(sentinel) == []

    await inbox.join_conv(conv)  # interest again after zero
    await delivery.publish_conv(conv, third := broadcast(conv, "back"))
    assert await got.next() == third


@pytest.mark.slow
async def test_subscriptions_survive_a_nats_server_restart(
        connect: Connect, nats_server: ServerProcess, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    caplog.set_level(logging.INFO, logger="parley.adapters.nats_bus")
    delivery, gateway = await connect(), await connect()
    got, gw_id, conv = Inbox(), unique("gw"), unique("conv")
    inbox = await gateway.serve_gateway(gw_id, got.handle)
    await inbox.join_conv(conv)

    nats_server.restart()
    # Logged once a connection is back with its subscriptions replayed and confirmed.
    await until(lambda: sum("reconnected" in r.getMessage() for r in caplog.records) == 2)

    await delivery.to_gateway(gw_id, direct := deliver("direct after restart"))
    await delivery.publish_conv(conv, published := broadcast(conv, "conv after restart"))
    assert {msgspec.msgpack.encode(await got.next()) for _ in range(2)} == {
        msgspec.msgpack.encode(direct), msgspec.msgpack.encode(published)}


async def test_a_bad_payload_is_dropped_and_the_subscription_lives_on(
        connect: Connect, nats_server: ServerProcess, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    delivery, gateway = await connect(), await connect()
    got, gw_id = Inbox(), unique("gw")
    await gateway.serve_gateway(gw_id, got.handle)

    raw = await nats.connect(nats_server.url)
    try:
        await raw.publish(topics.gateway_subject(gw_id), b"\xc1 not msgpack")
        await raw.publish(topics.gateway_subject(gw_id), msgspec.msgpack.encode(["Unknown", 1]))
        await raw.flush()
    finally:
        await raw.close()
    await delivery.to_gateway(gw_id, good := deliver("still served"))

    assert await got.next() == good
    dropped = [r for r in caplog.records if "undecodable" in r.getMessage()]
    assert len(dropped) == 2 and all(r.levelno == logging.WARNING for r in dropped)


async def test_a_failing_handler_does_not_stop_later_messages(connect: Connect) -> None:
    delivery, gateway = await connect(), await connect()
    got, gw_id = Inbox(), unique("gw")
    boom = deliver("boom")

    def handler(msg: GatewayMessage) -> None:
        if msg == boom:
            raise RuntimeError("a bug in the gateway")
        got.handle(msg)

    await gateway.serve_gateway(gw_id, handler)
    await delivery.to_gateway(gw_id, boom)
    await delivery.to_gateway(gw_id, after := deliver("after"))
    assert await got.next() == after


@pytest.mark.slow
async def test_publishing_while_nats_is_down_buffers_up_to_a_bound_then_raises_unavailable(
        connect: Connect, nats_server: ServerProcess) -> None:  # noqa: F811
    # One connection both serves and publishes: on reconnect nats-py replays its subscriptions
    # before flushing its buffer, so what was buffered must arrive.
    bus = await connect(pending_bytes=8 * 1024)
    got, gw_id = Inbox(), unique("gw")
    await bus.serve_gateway(gw_id, got.handle)

    nats_server.stop()
    try:
        await until(lambda: not bus.connected, timeout=5)
        buffered: list[Deliver] = []
        with pytest.raises(Unavailable) as raised:
            for n in range(100):  # 1 KiB each: the 8 KiB buffer fills within a few
                msg = Deliver(users=["u"], frame=b"%d " % n + b"x" * 1024)
                await bus.to_gateway(gw_id, msg)
                buffered.append(msg)
        assert 3 <= len(buffered) < 8 and raised.value.retry_after_ms
    finally:
        nats_server.start()

    await until(lambda: bus.connected)
    assert [await got.next() for _ in buffered] == buffered


async def test_close_drains_what_was_published_before_it(connect: Connect) -> None:
    delivery, gateway = await connect(), await connect()
    got, gw_id = Inbox(), unique("gw")
    await gateway.serve_gateway(gw_id, got.handle)

    sent = [deliver(f"m{n}") for n in range(500)]
    for msg in sent:
        await delivery.to_gateway(gw_id, msg)
    await delivery.close()

    assert [await got.next() for _ in sent] == sent
    with pytest.raises(Unavailable):
        await delivery.to_gateway(gw_id, deliver("after close"))


async def test_connect_gives_up_with_unavailable_when_no_server_listens() -> None:
    started = time.monotonic()
    with pytest.raises(Unavailable):
        await NatsBus.connect(f"nats://127.0.0.1:{free_port()}", connect_timeout_s=0.5)
    assert time.monotonic() - started < 3
