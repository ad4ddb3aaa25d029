"""Client spans on `parley up` (PARLEY_TRACE_CLIENTS=1), received as a collector would receive
them: one message's trace also holds the gateway's Redis commands and its Kafka send as
children of the hops that made them, and no Redis command or Kafka send anywhere (presence
lookups, the relay's publishes, a delivery's fan-out) starts a trace of its own."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.conftest import ParleyProcess
from tests.integration.test_messaging import MakeUser, close_all
from tests.integration.test_tracing_up import (PRODUCER, make_traced_user, one, receiver,  # noqa: F401
                                               traced_parley_up, traced_send)
from tests.otlp_receiver import OtlpReceiver

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CLIENT = 3  # OTLP's SpanKind number
REDIS, KAFKA = "opentelemetry.instrumentation.redis", "opentelemetry.instrumentation.aiokafka"
#: Where a trace may start: Parley's frame and handshake spans, and HTTP requests.
ROOT_SCOPES = {"parley", "opentelemetry.instrumentation.aiohttp_server"}


@pytest.fixture(scope="module")
def traced_up(receiver: OtlpReceiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ParleyProcess]:  # noqa: F811
    """What `make_traced_user` registers on: `parley up` with client spans."""
    yield from traced_parley_up(receiver, tmp_path_factory.mktemp("clients-up") / "data", PARLEY_TRACE_CLIENTS="1")


async def test_a_message_s_trace_holds_its_client_calls_under_their_hops_and_no_client_call_starts_a_trace(
        traced_up: ParleyProcess, receiver: OtlpReceiver, make_traced_user: MakeUser) -> None:  # noqa: F811
    clients, trace_id = await traced_send(traced_up, receiver, make_traced_user, "traced with its clients")
    await asyncio.sleep(1.5)  # the relay's and delivery's Redis and Kafka calls, had they made spans
    await close_all(*clients)
    spans = receiver.trace(trace_id)

    frame = next(s for s in spans if s.name == "ws Send")
    publish = one(spans, "command.publish", frame)
    sends = [s for s in spans if s.scope == KAFKA]
    assert [(s.name, s.kind, s.parent_id) for s in sends] == [("parley.commands send", PRODUCER, publish.span_id)]
    commands = [s for s in spans if s.scope == REDIS]
    assert commands, "the rate limit is counted in Redis while the frame is handled"
    assert all(s.kind == CLIENT and s.parent_id == frame.span_id and s.service == "parley-gateway" for s in commands)
    assert {s.name for s in spans if s.scope == "parley"} == {
        "ws Send", "command.publish", "chat_core.command", "chat_core.decide", "store.write", "relay.publish",
        "delivery.fanout", "gateway.push"}, "Parley's own hops are as without client spans"

    client_spans = [s for s in receiver.spans if s.scope in (REDIS, KAFKA)]
    assert not [s for s in client_spans if not s.parent_id], "no client call starts a trace"
    assert {s.scope for s in receiver.spans if not s.parent_id} <= ROOT_SCOPES
