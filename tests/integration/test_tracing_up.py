"""Tracing and logs on `parley up`, received as an OpenTelemetry collector would receive them:
one message's spans form one trace over every hop with the right parents (also when a new
chat-core relays it from the outbox after a crash), and every role's log lines are JSON that
carry the trace ids of the request they log."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from parley.sdk import Account, Client, register
from tests.conftest import ParleyProcess
from tests.integration.test_messaging import MakeUser, close_all
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PRODUCER, CONSUMER, SERVER = 4, 5, 2  # OTLP's SpanKind numbers


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    found = OtlpReceiver()
    found.start()
    yield found
    found.stop()


def traced_parley_up(receiver: OtlpReceiver, data_dir: Path, **env: str) -> Iterator[ParleyProcess]:
    """`parley up` tracing every message to `receiver`, with `env` besides, until the module ends."""
    proc = ParleyProcess(data_dir, mode="up", env={
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_TRACES_SAMPLER_ARG": "1",
        "OTEL_BSP_SCHEDULE_DELAY": "100", **env})
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def traced_up(receiver: OtlpReceiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ParleyProcess]:
    # The relay records no checkpoint while the module runs, so a relayed event's outbox row
    # stays (SQLite drops rows at a checkpoint) and a chat-core killed at any time after
    # the relay has published it leaves that row for its successor to replay.
    yield from traced_parley_up(receiver, tmp_path_factory.mktemp("traced-up") / "data",
                                PARLEY_RELAY_CHECKPOINT_S="3600")


_names = itertools.count()


@pytest.fixture
def make_traced_user(traced_up: ParleyProcess) -> MakeUser:
    async def make() -> Account:
        return await register(traced_up.base_url, f"t{os.getpid()}_{next(_names)}", "correct horse")
    return make


def one(spans: list[ReceivedSpan], name: str, parent: ReceivedSpan) -> ReceivedSpan:
    found = [s for s in spans if s.name == name and s.parent_id == parent.span_id]
    assert len(found) == 1, f"{name} under {parent.name}: {found} in {spans}"
    return found[0]


def children(spans: list[ReceivedSpan], name: str, parent: ReceivedSpan) -> list[ReceivedSpan]:
    return [s for s in spans if s.name == name and s.parent_id == parent.span_id]


async def sent_and_seen(sender: Client, reader: Client, conv: str, text: str) -> None:
    await sender.send(conv, text)
    while (await reader.next_event("message.new", conv=conv, timeout=10))["message"]["text"] != text:
        pass


def send_trace(receiver: OtlpReceiver, after_ns: int) -> str:
    sends = [s for s in receiver.spans if s.name == "ws Send" and s.start_ns >= after_ns]
    assert len(sends) == 1, sends
    return sends[0].trace_id


def pushed(receiver: OtlpReceiver, trace_id: str, relay_step: str) -> bool:
    spans = receiver.trace(trace_id)
    by_id = {s.span_id: s for s in spans}
    return any(s.name == "gateway.push" and by_id.get(s.parent_id) is not None
               and by_id.get(by_id[s.parent_id].parent_id, s).name == relay_step for s in spans)


def outbox_rows(up: ParleyProcess) -> int:
    with sqlite3.connect(up.data_dir / "parley.db", timeout=10) as db:
        count: int = db.execute("SELECT count(*) FROM outbox").fetchone()[0]
    return count


async def traced_send(up: ParleyProcess, receiver: OtlpReceiver, make_user: MakeUser,
                      text: str) -> tuple[list[Client], str]:
    """Alice sends `text` to a group with Bob; once Bob has it and its trace reached a gateway
    push: their clients and the message's trace id."""
    alice, bob = await make_user(), await make_user()
    clients = [await Client.connect(up.base_url, u.token) for u in (alice, bob)]
    conv = (await clients[0].request("conv.create", kind="group", members=[bob.user_id], title="t"))["conv"]["id"]
    after_ns = time.time_ns()
    await sent_and_seen(clients[0], clients[1], conv, text)
    await receiver.wait_for(lambda: any(s.name == "ws Send" and s.start_ns >= after_ns for s in receiver.spans))
    trace_id = send_trace(receiver, after_ns)
    await receiver.wait_for(lambda: pushed(receiver, trace_id, "relay.publish"))
    return clients, trace_id


async def test_one_message_is_one_trace_over_every_hop_with_the_right_parents(
        traced_up: ParleyProcess, receiver: OtlpReceiver, make_traced_user: MakeUser) -> None:
    clients, trace_id = await traced_send(traced_up, receiver, make_traced_user, "traced")
    await asyncio.sleep(1)  # the other gateway's push, if the two sessions are on both
    await close_all(*clients)
    spans = receiver.trace(trace_id)

    frame = next(s for s in spans if s.name == "ws Send")
    assert (frame.parent_id, frame.kind, frame.service) == ("", SERVER, "parley-gateway")
    connects = {s.span_id: s for s in receiver.spans if s.name == "ws.connect"}
    assert len(frame.links) == 1 and frame.links[0] in connects, "a frame links to its connection's handshake"
    assert connects[frame.links[0]].end_ns <= frame.start_ns, "the handshake span ended at hello"
    publish = one(spans, "command.publish", frame)
    assert publish.kind == PRODUCER
    command = one(spans, "chat_core.command", publish)
    assert (command.kind, command.service) == (CONSUMER, "parley-chat-core")
    one(spans, "chat_core.decide", command)
    one(spans, "store.write", command)
    relays = children(spans, "relay.publish", command)
    assert relays and all(r.service == "parley-chat-core" and r.kind == PRODUCER for r in relays)
    for relay in relays:
        fanout = one(spans, "delivery.fanout", relay)
        assert (fanout.kind, fanout.service) == (CONSUMER, "parley-delivery")
        pushes = children(spans, "gateway.push", fanout)
        assert pushes and all(p.service == "parley-gateway" for p in pushes)
    assert {s.name for s in spans} == {"ws Send", "command.publish", "chat_core.command", "chat_core.decide",
                                       "store.write", "relay.publish", "delivery.fanout", "gateway.push"}


async def test_a_message_relayed_after_a_chat_core_restart_continues_its_trace(
        traced_up: ParleyProcess, receiver: OtlpReceiver, make_traced_user: MakeUser) -> None:
    clients, trace_id = await traced_send(traced_up, receiver, make_traced_user, "relayed again")
    # A crash between the store write and the checkpoint that covers it, made certain: the relay
    # checkpoints nothing here (see `traced_up`), so both chat-cores killed leave the outbox whole
    # and their successors replay it from its start.
    assert outbox_rows(traced_up) > 0, "the message's outbox row is there to replay"
    for process in traced_up.topology()["processes"]:
        if process["role"] == "chat-core":
            os.kill(process["pid"], signal.SIGKILL)
    await receiver.wait_for(lambda: pushed(receiver, trace_id, "relay.replay"), timeout_s=150)
    await close_all(*clients)

    spans = receiver.trace(trace_id)
    command = next(s for s in spans if s.name == "chat_core.command")
    replays = children(spans, "relay.replay", command)
    assert replays and all(r.instance != command.instance and r.service == "parley-chat-core" for r in replays), \
        "a new chat-core replays the stored event as a child of the span that stored it"
    for replay in replays:
        for fanout in children(spans, "delivery.fanout", replay):
            assert children(spans, "gateway.push", fanout)


async def test_every_role_logs_json_lines_with_the_trace_ids_of_the_request_they_log(
        traced_up: ParleyProcess, receiver: OtlpReceiver, make_traced_user: MakeUser) -> None:
    await make_traced_user()
    await asyncio.sleep(1.5)  # log lines are written at once; spans are exported in batches
    spans = {(s.trace_id, s.span_id): s for s in receiver.spans}
    roles = set()
    access = 0
    for process in traced_up.topology()["processes"]:
        for line in Path(process["log"]).read_text().splitlines():
            entry = json.loads(line)  # every line is one JSON object
            assert {"time", "level", "role", "instance", "logger", "msg"} <= entry.keys(), line
            roles.add(entry["role"])
            if entry["logger"] == "parley.access" and entry["route"] != "/v1/ws":
                access += 1
                span = spans.get((entry["trace_id"], entry["span_id"]))
                assert span is not None and span.service == "parley-gateway", f"no such span for {line}"
                assert entry["method"] in span.name
    assert roles == {"gateway", "chat-core", "delivery"}
    assert access >= 2, "registering is two requests, each logged with its trace"
