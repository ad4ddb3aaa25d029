"""The client instrumentations' rule (PARLEY_TRACE_CLIENTS): a Redis command, Kafka send or CQL
query never starts a trace; inside a sampled request it is a child of the current span, and
inside an unsampled one it is dropped with its request."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from opentelemetry.instrumentation.aiokafka import AIOKafkaInstrumentor
from opentelemetry.instrumentation.cassandra import CassandraInstrumentor
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, Sampler
from opentelemetry.trace import SpanKind, Tracer

from parley import tracing
from tests.unit.test_tracing_steps import _configure


def clients_tracer(exported: InMemorySpanExporter, sampler: Sampler) -> Tracer:
    provider = TracerProvider(sampler=tracing.ChildrenOnly(sampler))
    provider.add_span_processor(SimpleSpanProcessor(exported))
    return provider.get_tracer("client")


@pytest.mark.parametrize("kind", [SpanKind.CLIENT, SpanKind.PRODUCER, SpanKind.CONSUMER, SpanKind.INTERNAL])
def test_a_client_call_outside_any_request_makes_no_span(kind: SpanKind) -> None:
    exported = InMemorySpanExporter()
    with clients_tracer(exported, ALWAYS_ON).start_as_current_span("GET", kind=kind) as span:
        assert not span.is_recording()
    assert exported.get_finished_spans() == ()


def test_a_client_call_in_a_sampled_request_is_a_child_of_its_current_span(monkeypatch: pytest.MonkeyPatch) -> None:
    exported = _configure(monkeypatch, ParentBased(ALWAYS_ON))
    clients = clients_tracer(exported, ParentBased(ALWAYS_ON))
    frame = tracing.start("ws.frame", None, SpanKind.SERVER)
    with tracing.active(frame):
        with clients.start_as_current_span("EVALSHA", kind=SpanKind.CLIENT):
            pass
        with tracing.active(publish := tracing.inner("command.publish", SpanKind.PRODUCER)):
            with clients.start_as_current_span("parley.commands send", kind=SpanKind.PRODUCER):
                pass
    spans = {span.name: span for span in exported.get_finished_spans()}
    assert frame is not None and publish is not None
    assert spans["EVALSHA"].parent is not None and spans["EVALSHA"].parent.span_id == frame.get_span_context().span_id
    send = spans["parley.commands send"]
    assert send.parent is not None and send.parent.span_id == publish.context.span_id, "a child of the step"
    assert send.context.trace_id == frame.get_span_context().trace_id


def test_a_client_call_in_a_request_its_trace_did_not_sample_makes_no_span(monkeypatch: pytest.MonkeyPatch) -> None:
    exported = _configure(monkeypatch, ParentBased(ALWAYS_OFF))
    clients = clients_tracer(exported, ParentBased(ALWAYS_OFF))
    # The aiohttp server instrumentation's unsampled request span is current in a REST handler.
    with tracing._provider.get_tracer("aiohttp").start_as_current_span("GET /v1/x"):  # type: ignore[union-attr]
        with clients.start_as_current_span("GET", kind=SpanKind.CLIENT) as span:
            assert not span.is_recording()
    assert exported.get_finished_spans() == ()


def test_under_a_parent_the_configured_sampler_decides() -> None:
    exported = InMemorySpanExporter()
    parent = TracerProvider(sampler=ALWAYS_ON).get_tracer("parley").start_span("ws.frame")
    with tracing.active(parent):
        with clients_tracer(exported, ALWAYS_OFF).start_as_current_span("GET", kind=SpanKind.CLIENT) as span:
            assert not span.is_recording()
    assert "ChildrenOnly{AlwaysOffSampler}" == tracing.ChildrenOnly(ALWAYS_OFF).get_description()


@pytest.fixture
def instrumented() -> Iterator[None]:
    yield
    for instrumentor in (RedisInstrumentor(), CassandraInstrumentor(), AIOKafkaInstrumentor()):
        instrumentor.uninstrument()


def test_clients_are_instrumented_on_kafka_s_producer_side_only(instrumented: None) -> None:
    provider = TracerProvider()
    tracing._trace_clients(provider, SimpleSpanProcessor(InMemorySpanExporter()))
    assert hasattr(AIOKafkaProducer.send, "__wrapped__")
    assert not hasattr(AIOKafkaConsumer.getmany, "__wrapped__") and not hasattr(AIOKafkaConsumer.getone, "__wrapped__")
    assert RedisInstrumentor().is_instrumented_by_opentelemetry
    assert CassandraInstrumentor().is_instrumented_by_opentelemetry
