"""Parley's OTLP span encoding (parley.tracing_otlp) against the SDK's: the same message for
every kind of span the SDK can finish (attributes of every value type, events, links, error
status, remote parents, trace state, several resources and scopes) and for Parley's steps."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace import TraceState, set_span_in_context

from parley import tracing, tracing_otlp

REMOTE = SpanContext(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, is_remote=True,
                     trace_flags=TraceFlags(TraceFlags.SAMPLED), trace_state=TraceState([("vendor", "x1")]))


def finished_sdk_spans() -> tuple[ReadableSpan, ...]:
    exported = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "parley-test", "n": 3}))
    provider.add_span_processor(SimpleSpanProcessor(exported))
    tracer = provider.get_tracer("parley")
    other = provider.get_tracer("opentelemetry.instrumentation.aiohttp_server", "0.66b1",
                                schema_url="https://opentelemetry.io/schemas/1.11.0")
    with tracer.start_as_current_span("root", kind=SpanKind.SERVER, attributes={
            "s": "text", "empty": "", "yes": True, "no": False, "n": 42, "zero": 0, "neg": -7,
            "big": 2**62, "f": 1.5, "ints": [1, -2, 3], "strs": ["a", ""], "bools": [True, False]}) as root:
        root.add_event("something", {"why": "because", "count": 2})
        root.add_event("bare")
        root.set_status(Status(StatusCode.ERROR, "it broke"))
        with tracer.start_as_current_span("inner", links=[Link(REMOTE, {"link.kind": "connection"})]) as inner:
            inner.set_status(Status(StatusCode.OK))
    with other.start_as_current_span("GET /v1/conversations", kind=SpanKind.CLIENT, attributes={"http.status": 200}):
        pass
    with tracer.start_as_current_span("child of remote", set_span_in_context(NonRecordingSpan(REMOTE)),
                                      kind=SpanKind.CONSUMER):
        pass
    tracer.start_span("producer", kind=SpanKind.PRODUCER).end()
    return exported.get_finished_spans()


def parley_steps(monkeypatch: pytest.MonkeyPatch) -> tuple[ReadableSpan, ...]:
    exported = InMemorySpanExporter()
    provider = TracerProvider(resource=tracing._HashedOnce(Resource.create({"service.name": "parley-chat-core"})))
    processor = SimpleSpanProcessor(exported)
    monkeypatch.setattr(tracing, "_provider", provider)
    monkeypatch.setattr(tracing, "_processor", processor)
    monkeypatch.setattr(tracing, "_tracer", provider.get_tracer("parley"))
    command = tracing.follow("chat_core.command", tracing.traceparent(REMOTE), SpanKind.CONSUMER)
    tracing.record("store.write", command, 100, 200)
    with pytest.raises(ValueError), tracing.active(tracing.child("chat_core.decide", command)):
        raise ValueError("refused")
    assert command is not None
    tracing.end_all([command])
    return exported.get_finished_spans()


def test_every_kind_of_sdk_span_encodes_as_the_sdk_encodes_it() -> None:
    spans = finished_sdk_spans()
    ours = ExportTraceServiceRequest.FromString(tracing_otlp.encode(spans))
    assert ours == sdk_encode_spans(spans)
    assert len(ours.resource_spans[0].scope_spans) == 2, "spans of two scopes, grouped"


def test_parley_s_steps_encode_as_the_sdk_encodes_them(monkeypatch: pytest.MonkeyPatch) -> None:
    steps = parley_steps(monkeypatch)
    assert {s.name for s in steps} == {"chat_core.command", "store.write", "chat_core.decide"}
    assert tracing_otlp.encode_spans(steps) == sdk_encode_spans(steps)


def test_spans_of_two_resources_are_grouped_as_the_sdk_groups_them(monkeypatch: pytest.MonkeyPatch) -> None:
    spans = (*finished_sdk_spans(), *parley_steps(monkeypatch), *finished_sdk_spans()[:2])
    assert tracing_otlp.encode_spans(spans) == sdk_encode_spans(spans)


def test_an_attribute_value_with_no_otlp_encoding_is_refused() -> None:
    span = ReadableSpan("x", REMOTE, attributes={"odd": object()})  # the SDK's API never lets one through
    with pytest.raises(TypeError):
        tracing_otlp.encode([span])
