"""Distributed tracing: one trace per message, over every hop, with the OpenTelemetry SDK.

A write's trace context travels with it as a W3C `traceparent` string (`trace` on `Command`,
`EventRecord`, `Deliver` and `Broadcast`), so it survives every transport the same way its
`t_ns` stamps do: in-process queues, Kafka records, the outbox row (a relay that adopts a shard
after a crash continues the trace of what it replays) and NATS messages. The Kafka and NATS
adapters also write it as a `traceparent` header, the standard carrier other tools read.

The gateway's frame span is the SDK's (the sampler decides there); every hop after it is a
`Step`, a span without the SDK span's machinery, exported through the same processor (~7 times
cheaper: docs/benchmarks.md, "Tracing cost"), and the OTLP exporter encodes with
`parley.tracing_otlp`.

Off unless configured (`configure`): then every function here is a constant-time no-op and
records carry `trace=None`. Configured by the standard variables: an OTLP/HTTP exporter when
`OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) or `OTEL_TRACES_EXPORTER=otlp` is set,
sampling by `OTEL_TRACES_SAMPLER` (default here: `parentbased_traceidratio` at
`OTEL_TRACES_SAMPLER_ARG`, default 0.01), the service name `parley-<role>` unless
`OTEL_SERVICE_NAME` says otherwise; `parley dev --trace FILE` writes every span as a JSON line
to FILE instead, for a newcomer without a collector. `OTEL_SDK_DISABLED=true` wins over all.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping, Sequence
from types import MappingProxyType, TracebackType
from typing import IO, TypeVar

import msgspec
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Decision, ParentBased, Sampler, SamplingResult, TraceIdRatioBased
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (Link, NonRecordingSpan, Span, SpanContext, SpanKind, Status, StatusCode, TraceFlags,
                                 TraceState)
from opentelemetry.util.types import Attributes, AttributeValue

from parley.ports import Broadcast, Deliver
from parley.records import Command, EventRecord

#: What a trace context rides on: every record with a `trace` field.
Traced = TypeVar("Traced", Command, EventRecord, Deliver, Broadcast)

#: Never traced: probes and scrapes (noise), and the WebSocket upgrade, whose request lasts the
#: whole connection (its handshake and each frame get their own spans in gateway/ws.py).
UNTRACED_URLS = "/v1/ws,/metrics,/healthz,/readyz"

_tracer: trace.Tracer | None = None
_provider: TracerProvider | None = None
#: Where the provider's spans go; `Step`s are handed to it directly.
_processor: SpanProcessor | None = None
#: True if the sampler is parent-based with its default delegates (see `_step`).
_parent_decides = False
#: The `_tracer`'s scope, which `Step`s share (the OTLP encoder groups spans by it).
_SCOPE = InstrumentationScope("parley")


def enabled() -> bool:
    return _tracer is not None


def _wanted(trace_file: str | None) -> bool:
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if trace_file:
        return True
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return exporter == "otlp" or bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                                      or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def _sampler(local: bool) -> Sampler | None:
    """None: the SDK reads `OTEL_TRACES_SAMPLER` itself. Parley's default is parent-based ratio
    sampling (a trace is kept or dropped whole, decided where it starts), everything locally."""
    if local:
        return ALWAYS_ON
    if os.environ.get("OTEL_TRACES_SAMPLER"):
        return None
    return ParentBased(TraceIdRatioBased(float(os.environ.get("OTEL_TRACES_SAMPLER_ARG") or 0.01)))


def _defaults_to_parent(sampler: Sampler) -> bool:
    """Whether `sampler` keeps a child exactly when its parent is sampled (ParentBased with
    its default delegates for sampled and unsampled parents, local or remote)."""
    if not isinstance(sampler, ParentBased):
        return False
    defaults = ParentBased(ALWAYS_ON)
    # The SDK keeps the delegates in private attributes: if a version renames them, the answer
    # is False and every step asks the sampler (slower, never wrong).
    missing = object()
    return all(getattr(sampler, name, missing) is getattr(defaults, name, None) for name in
               ("_remote_parent_sampled", "_remote_parent_not_sampled", "_local_parent_sampled",
                "_local_parent_not_sampled"))


class JsonLinesExporter(SpanExporter):
    """Each finished span as one JSON line (the SDK's own `to_json`), for `parley dev --trace`."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for span in spans:
            self._out.write(span.to_json(indent=None) + "\n")
        self._out.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self._out.close()


class _HashedOnce(Resource):
    """A resource that hashes once: the OTLP encoder groups every span it exports by its
    resource, and the SDK's `Resource.__hash__` serialises the attributes to JSON each time
    (~3 µs a span, a tenth of what a span costs to export). A resource never changes."""

    def __init__(self, resource: Resource) -> None:
        super().__init__(resource.attributes, resource.schema_url)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash


def configure(role: str, instance: str, trace_file: str | None = None, *, clients: bool = False) -> bool:
    """Set up this process's tracing if the environment (or `trace_file`) asks for it; True if
    it did; with `clients` (PARLEY_TRACE_CLIENTS), Redis, Kafka sends and CQL too (`_trace_clients`).
    Call once, before the role's applications are built (the aiohttp instrumentations hook
    application and session creation)."""
    global _tracer, _provider, _processor, _parent_decides
    if not _wanted(trace_file):
        return False
    resource = _HashedOnce(Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or f"parley-{role}",
                                            "service.instance.id": instance, "parley.role": role}))
    provider = TracerProvider(resource=resource, sampler=_sampler(trace_file is not None))
    processor: SpanProcessor
    if trace_file:
        processor = SimpleSpanProcessor(JsonLinesExporter(open(trace_file, "a", encoding="utf-8")))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        from parley import tracing_otlp
        tracing_otlp.install()
        processor = BatchSpanProcessor(OTLPSpanExporter())
    provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    os.environ.setdefault("OTEL_PYTHON_AIOHTTP_SERVER_EXCLUDED_URLS", UNTRACED_URLS)
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor
    AioHttpServerInstrumentor().instrument(tracer_provider=provider)
    AioHttpClientInstrumentor().instrument(tracer_provider=provider)
    if clients:
        _trace_clients(provider, processor)
    _provider, _processor = provider, processor
    _parent_decides = _defaults_to_parent(provider.sampler)
    _tracer = provider.get_tracer("parley")
    return True


class ChildrenOnly(Sampler):
    """Samples like `sampler`, except that a span without a parent is dropped: a client call (a
    Redis command, a Kafka send, a CQL query) made outside a traced request starts no trace of
    its own. Given to the client instrumentations only, on a provider of their own
    (`_trace_clients`): they set `db.system` or `messaging.system` after their spans start, so a
    sampler sees no attribute to know them by, and their kinds (CLIENT, PRODUCER) are also those
    of aiohttp's client spans, which may start traces (a push sent outside any request)."""

    def __init__(self, sampler: Sampler) -> None:
        self._sampler = sampler

    def should_sample(self, parent_context: otel_context.Context | None, trace_id: int, name: str,
                      kind: SpanKind | None = None, attributes: Attributes = None, links: Sequence[Link] | None = None,
                      trace_state: TraceState | None = None) -> SamplingResult:
        if not trace.get_current_span(parent_context).get_span_context().is_valid:
            return SamplingResult(Decision.DROP)
        return self._sampler.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"ChildrenOnly{{{self._sampler.get_description()}}}"


def _trace_clients(provider: TracerProvider, processor: SpanProcessor) -> None:
    """The maintained instrumentations of redis-py, aiokafka's producer and cassandra-driver,
    on a provider of their own that shares the process's resource, ids and exporter and keeps
    only children (`ChildrenOnly`). aiokafka's consumer side is left out: per fetched record it
    extracts the header's context and makes a `receive` span that ends before the record is
    processed (Parley's `chat_core.command` and `delivery.fanout` steps cover that), plus a poll
    span per fetch that would be a root; that work on every record, sampled or not, shows
    nothing the steps do not (docs/operations.md, "Tracing")."""
    from aiokafka import AIOKafkaConsumer
    from opentelemetry.instrumentation.aiokafka import AIOKafkaInstrumentor
    from opentelemetry.instrumentation.cassandra import CassandraInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.instrumentation.utils import unwrap

    tracers = TracerProvider(sampler=ChildrenOnly(provider.sampler), resource=provider.resource,
                             id_generator=provider.id_generator, shutdown_on_exit=False)  # `provider` shuts `processor`
    tracers.add_span_processor(processor)
    RedisInstrumentor().instrument(tracer_provider=tracers)
    CassandraInstrumentor().instrument(tracer_provider=tracers)
    AIOKafkaInstrumentor().instrument(tracer_provider=tracers)
    unwrap(AIOKafkaConsumer, "getone")
    unwrap(AIOKafkaConsumer, "getmany")


def shutdown() -> None:
    """Export what is buffered (at the end of the process)."""
    if _provider is not None:
        _provider.shutdown()


# ---- the carrier: W3C traceparent ------------------------------------------------------------

def traceparent(ctx: SpanContext) -> str:
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def parse(carrier: str | None) -> SpanContext | None:
    """The remote span context of a `traceparent`, or None if there is none or it is malformed
    (a bad header from elsewhere must not break the pipeline)."""
    if not carrier:
        return None
    parts = carrier.split("-")
    if len(parts) != 4 or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    try:
        ctx = SpanContext(int(parts[1], 16), int(parts[2], 16), is_remote=True, trace_flags=TraceFlags(int(parts[3], 16)))
    except ValueError:
        return None
    return ctx if ctx.is_valid else None


def current() -> str | None:
    """The `traceparent` of the current span, for a record about to leave this process."""
    if _tracer is None:
        return None
    ctx = trace.get_current_span().get_span_context()
    return traceparent(ctx) if ctx.is_valid else None


def ids() -> tuple[str, str] | None:
    """(trace_id, span_id) in hex of the current span, for log lines and exemplars."""
    if _tracer is None:
        return None
    ctx = trace.get_current_span().get_span_context()
    return (f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}") if ctx.is_valid and ctx.trace_flags.sampled else None


def exemplar(carrier: str | None) -> dict[str, str] | None:
    """A histogram exemplar naming the trace of `carrier` if it is sampled (Prometheus links the
    latency bucket to that trace)."""
    ctx = parse(carrier) if _tracer is not None else None
    return {"trace_id": f"{ctx.trace_id:032x}"} if ctx is not None and ctx.trace_flags.sampled else None


# ---- spans ---------------------------------------------------------------------------------

def start(name: str, parent: str | None, kind: SpanKind = SpanKind.INTERNAL, *,
          links: Sequence[SpanContext] = (), start_time: int | None = None) -> Span | None:
    """A span that is a child of the remote `parent` (a new trace if None); end it yourself.
    None while tracing is off."""
    if _tracer is None:
        return None
    remote = parse(parent)
    ctx = trace.set_span_in_context(NonRecordingSpan(remote)) if remote is not None else otel_context.Context()
    span = _tracer.start_span(name, ctx, kind, links=[Link(link) for link in links], start_time=start_time)
    # Not sampled: nothing to record here, and nothing to carry on (every hop after would drop
    # it too): None costs the rest of the pipeline nothing.
    return span if span.is_recording() else None


def follow(name: str, parent: str | None, kind: SpanKind) -> Step | None:
    """A step continuing the trace a record carries; None if it carries none (tracing was off
    where it came from, its trace is not sampled, or it is an ephemeral signal: typing,
    presence)."""
    remote = parse(parent) if _tracer is not None else None
    return _step(name, remote, kind) if remote is not None else None


def inner(name: str, kind: SpanKind = SpanKind.INTERNAL) -> Step | None:
    """A step under the current span (make it current with `active`); None unless that one is
    sampled (an unsampled request would otherwise start a trace of its own here)."""
    if _tracer is None:
        return None
    ctx = trace.get_current_span().get_span_context()
    return _step(name, ctx, kind) if ctx.is_valid and ctx.trace_flags.sampled else None


def child(name: str, parent: Step | None) -> Step | None:
    """A step under a step of this process."""
    return _step(name, parent.context, SpanKind.INTERNAL) if parent is not None else None


def record(name: str, parent: Step | None, start_ns: int, end_ns: int) -> None:
    """A finished step under `parent` with its real times: a shared step, such as a batch's
    store write, shown in each of its messages' traces."""
    if parent is not None and (done := _step(name, parent.context, SpanKind.INTERNAL, start_ns)) is not None:
        done.end(end_ns)


_UNSET = Status(StatusCode.UNSET)
_NO_ATTRIBUTES: Mapping[str, AttributeValue] = MappingProxyType({})  # as an SDK span without any shows it


class Step:
    """A span over one step of a message's way (every hop after the gateway's frame span):
    its ids, start and outcome until it ends, then handed to the span processor as the SDK's
    `ReadableSpan` and exported like any other span. An SDK span costs about 7 times more CPU
    to make and end (a lock, attribute, event and link containers, the processors' start hook,
    a copy at the end: docs/benchmarks.md), none of which these spans use: Parley sets no
    attributes on them. Made current with `active`, its context is what logs and other
    instrumentations see, as a span's would be."""

    __slots__ = ("name", "kind", "context", "parent", "start_ns", "status", "events")

    def __init__(self, name: str, kind: SpanKind, context: SpanContext, parent: SpanContext,
                 start_ns: int) -> None:
        self.name, self.kind, self.context, self.parent, self.start_ns = name, kind, context, parent, start_ns
        self.status = _UNSET
        self.events: tuple[Event, ...] = ()

    def get_span_context(self) -> SpanContext:
        return self.context

    def failed(self, exc: BaseException) -> None:
        """As the SDK marks a span an exception left: error status, an `exception` event."""
        kind = type(exc).__name__
        self.status = Status(StatusCode.ERROR, f"{kind}: {exc}")
        self.events = (Event("exception", {"exception.type": kind, "exception.message": str(exc)}),)

    def end(self, end_time: int | None = None) -> None:
        if _processor is None or _provider is None:
            return
        _processor.on_end(ReadableSpan(
            self.name, self.context, self.parent, _provider.resource, _NO_ATTRIBUTES, self.events, kind=self.kind,
            status=self.status, start_time=self.start_ns, end_time=time.time_ns() if end_time is None else end_time,
            instrumentation_scope=_SCOPE))


def _step(name: str, parent: SpanContext, kind: SpanKind, start_ns: int | None = None) -> Step | None:
    """A `Step` under `parent`, if the provider's sampler keeps it (as it would an SDK span).
    A parent-based sampler with its default delegates (Parley's default, and every
    `parentbased_*` of `OTEL_TRACES_SAMPLER`) keeps exactly the children of sampled parents,
    with their trace state: decided here without its call (a context built per step)."""
    if _provider is None:
        return None
    trace_state: TraceState | None
    if _parent_decides:
        if not parent.trace_flags.sampled:
            return None
        trace_state = parent.trace_state
    else:
        sampling = _provider.sampler.should_sample(trace.set_span_in_context(NonRecordingSpan(parent)),
                                                   parent.trace_id, name, kind)
        if not sampling.decision.is_sampled():
            return None
        trace_state = sampling.trace_state
    flags = TraceFlags(parent.trace_flags | TraceFlags.SAMPLED)  # and the parent's random-id flag, if set
    context = SpanContext(parent.trace_id, _provider.id_generator.generate_span_id(), is_remote=False,
                          trace_flags=flags, trace_state=trace_state)
    return Step(name, kind, context, parent, time.time_ns() if start_ns is None else start_ns)


class _Current:
    """`active` for a `Step`: its context is current inside, an exception leaving marks it
    failed, and it ends on the way out (a class: no generator per use on the hot path)."""

    __slots__ = ("_step", "_token")

    def __init__(self, step: Step) -> None:
        self._step = step

    def __enter__(self) -> Step:
        self._token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(self._step.context)))
        return self._step

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        otel_context.detach(self._token)
        if exc is not None:
            self._step.failed(exc)
        self._step.end()


def active(span: Span | Step | None) -> contextlib.AbstractContextManager[object]:
    """`span` is the current span inside (so `current()`, logs and child spans see it), then ends.
    Without a span, a shared no-op: the common case (tracing off, or not sampled) on the hot path."""
    if span is None:
        return _NOTHING
    if isinstance(span, Step):
        return _Current(span)
    return trace.use_span(span, end_on_exit=True, record_exception=True, set_status_on_exception=True)


_NOTHING = contextlib.nullcontext()


def carried(span: Span | Step | None) -> str | None:
    """The `traceparent` a record leaving with `span` as its parent carries."""
    return traceparent(span.get_span_context()) if span is not None else None


def hop(items: Sequence[Traced], name: str, kind: SpanKind) -> tuple[list[Traced], list[Step]]:
    """A `Step` per traced item (a child of what it carries), and the items carrying their new
    step: a worker's step over a batch (the relay's publish, delivery's fan-out). End the steps
    with `end_all` when the step is done."""
    if _tracer is None:
        return list(items), []
    steps: list[Step] = []
    out: list[Traced] = []
    for item in items:
        made = follow(name, item.trace, kind)
        if made is None:
            out.append(item)
            continue
        steps.append(made)
        out.append(msgspec.structs.replace(item, trace=traceparent(made.context)))
    return out, steps


def end_all(steps: Sequence[Step]) -> None:
    end = time.time_ns()  # they end together
    for made in steps:
        made.end(end)
