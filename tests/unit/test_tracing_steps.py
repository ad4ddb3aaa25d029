"""The spans of a message's hops after the gateway's frame (`tracing.Step`): exported as the SDK
exports its own spans, with the right parents, kinds, times and outcome; current inside
`active` as a span would be; kept or dropped by the sampler as an SDK span would be."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, Sampler, StaticSampler, Decision
from opentelemetry.trace import SpanKind, StatusCode

from parley import tracing
from parley.records import EventRecord


def _configure(monkeypatch: pytest.MonkeyPatch, sampler: Sampler) -> InMemorySpanExporter:
    exported = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "parley-test"}), sampler=sampler)
    processor = SimpleSpanProcessor(exported)
    provider.add_span_processor(processor)
    monkeypatch.setattr(tracing, "_provider", provider)
    monkeypatch.setattr(tracing, "_processor", processor)
    monkeypatch.setattr(tracing, "_tracer", provider.get_tracer("parley"))
    monkeypatch.setattr(tracing, "_parent_decides", tracing._defaults_to_parent(sampler))
    return exported


@pytest.fixture
def exported(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    yield _configure(monkeypatch, ParentBased(ALWAYS_ON))


def by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {span.name: span for span in spans}


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def test_a_message_s_steps_are_exported_under_the_frame_span_with_their_parents(
        exported: InMemorySpanExporter) -> None:
    frame = tracing.start("ws.frame", None, SpanKind.SERVER)
    with tracing.active(frame):
        with tracing.active(publish := tracing.inner("command.publish", SpanKind.PRODUCER)):
            carrier = tracing.carried(publish)
    command = tracing.follow("chat_core.command", carrier, SpanKind.CONSUMER)
    with tracing.active(tracing.child("chat_core.decide", command)):
        pass
    tracing.record("store.write", command, 100, 200)
    relayed, steps = tracing.hop([EventRecord("c", b"{}", trace=tracing.carried(command))],
                                 "relay.publish", SpanKind.PRODUCER)
    tracing.end_all(steps)
    assert command is not None
    tracing.end_all([command])
    with tracing.active(tracing.follow("gateway.push", relayed[0].trace, SpanKind.CONSUMER)):
        pass

    spans = by_name(exported.get_finished_spans())
    assert set(spans) == {"ws.frame", "command.publish", "chat_core.command", "chat_core.decide",
                          "store.write", "relay.publish", "gateway.push"}
    assert len({span.context.trace_id for span in spans.values()}) == 1, "one trace"
    expected_parents = {"command.publish": "ws.frame", "chat_core.command": "command.publish",
                        "chat_core.decide": "chat_core.command", "store.write": "chat_core.command",
                        "relay.publish": "chat_core.command", "gateway.push": "relay.publish"}
    for name, parent in expected_parents.items():
        assert parent_of(spans[name]) == spans[parent].context.span_id, name
    assert spans["ws.frame"].parent is None
    assert [spans[n].kind for n in ("command.publish", "chat_core.command", "relay.publish", "gateway.push")] == [
        SpanKind.PRODUCER, SpanKind.CONSUMER, SpanKind.PRODUCER, SpanKind.CONSUMER]
    assert (spans["store.write"].start_time, spans["store.write"].end_time) == (100, 200)
    assert spans["chat_core.command"].parent is not None and spans["chat_core.command"].parent.is_remote
    assert all(span.resource.attributes["service.name"] == "parley-test" for span in spans.values())
    assert all(span.status.status_code is StatusCode.UNSET for span in spans.values())


def test_a_step_an_exception_leaves_is_exported_as_failed(exported: InMemorySpanExporter) -> None:
    carrier = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    with pytest.raises(ConnectionError), tracing.active(tracing.follow("relay.publish", carrier, SpanKind.PRODUCER)):
        raise ConnectionError("the log is away")
    (span,) = exported.get_finished_spans()
    assert (span.status.status_code, span.status.description) == (StatusCode.ERROR, "ConnectionError: the log is away")
    assert [(e.name, dict(e.attributes or {})) for e in span.events] == [
        ("exception", {"exception.type": "ConnectionError", "exception.message": "the log is away"})]


def test_inside_an_active_step_its_ids_are_the_current_ones(exported: InMemorySpanExporter) -> None:
    carrier = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    with tracing.active(push := tracing.follow("gateway.push", carrier, SpanKind.CONSUMER)):
        assert push is not None
        assert tracing.ids() == ("4bf92f3577b34da6a3ce929d0e0e4736", f"{push.context.span_id:016x}")
        assert tracing.current() == tracing.carried(push)
    assert tracing.ids() is None


def test_a_trace_its_start_did_not_sample_makes_no_step(exported: InMemorySpanExporter) -> None:
    unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
    assert tracing.follow("chat_core.command", unsampled, SpanKind.CONSUMER) is None
    record = EventRecord("c", b"{}", trace=unsampled)
    assert tracing.hop([record], "delivery.fanout", SpanKind.CONSUMER) == ([record], [])
    assert exported.get_finished_spans() == ()


def test_a_sampler_that_is_not_parent_based_decides_each_step(monkeypatch: pytest.MonkeyPatch) -> None:
    exported = _configure(monkeypatch, StaticSampler(Decision.DROP))
    assert not tracing._parent_decides
    sampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert tracing.follow("chat_core.command", sampled, SpanKind.CONSUMER) is None
    assert exported.get_finished_spans() == ()


def test_a_parent_based_sampler_with_its_own_delegates_decides_each_step(monkeypatch: pytest.MonkeyPatch) -> None:
    exported = _configure(monkeypatch, ParentBased(ALWAYS_ON, remote_parent_sampled=StaticSampler(Decision.DROP)))
    assert not tracing._parent_decides
    sampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert tracing.follow("chat_core.command", sampled, SpanKind.CONSUMER) is None
    assert exported.get_finished_spans() == ()
