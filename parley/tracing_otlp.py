"""OTLP's protobuf encoding of finished spans, written out by hand: the bytes the SDK's encoder
(`opentelemetry.exporter.otlp.proto.common.trace_encoder.encode_spans`) makes, in about a
quarter of its CPU. The SDK's builds a protobuf message object per span, per attribute and per
status through keyword arguments, ~9 µs a span; at 100% sampling that was a third of what
tracing cost per message (docs/benchmarks.md). `install` makes the OTLP/HTTP exporter use it.

Field numbers: opentelemetry-proto's trace.proto, common.proto and resource.proto (v1).
tests/unit/test_tracing_otlp.py holds it to the SDK's encoder, message for message.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext

_FIXED64 = struct.Struct("<Q").pack
_FIXED32 = struct.Struct("<I").pack
_DOUBLE = struct.Struct("<d").pack

# Span.flags (fixed32): the parent's is_remote is known; set if it is remote.
_HAS_IS_REMOTE = 0x100
_IS_REMOTE = 0x200


def _varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    """A length-delimited field (`tag` is the whole key byte: number << 3 | 2)."""
    return bytes((tag,)) + _varint(len(payload)) + payload


def _text(tag: int, value: str) -> bytes:
    return _field(tag, value.encode())


def _value(value: Any) -> bytes:
    """An AnyValue, as the SDK encodes an attribute value (bool before int: bool is an int)."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _text(0x0A, value)
    if isinstance(value, int):
        return b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)  # int64: negatives in two's complement
    if isinstance(value, float):
        return b"\x21" + _DOUBLE(value)
    if isinstance(value, bytes):
        return _field(0x3A, value)
    if isinstance(value, Sequence):
        return _field(0x2A, b"".join(_field(0x0A, _value(v)) for v in value))
    if isinstance(value, Mapping):
        return _field(0x32, b"".join(_field(0x0A, _key_value(str(k), v)) for k, v in value.items()))
    raise TypeError(f"an attribute value of type {type(value).__name__} has no OTLP encoding")


def _key_value(key: str, value: Any) -> bytes:
    return _text(0x0A, key) + _field(0x12, _value(value))


def _attributes(tag: int, attributes: Mapping[str, Any] | None) -> bytes:
    return b"".join(_field(tag, _key_value(k, v)) for k, v in attributes.items()) if attributes else b""


def _count(tag: int, n: int) -> bytes:
    return bytes((tag,)) + _varint(n) if n else b""


def _flags(parent: SpanContext | None) -> bytes:
    return _FIXED32(_HAS_IS_REMOTE | _IS_REMOTE if parent is not None and parent.is_remote else _HAS_IS_REMOTE)


def _span(span: ReadableSpan) -> bytes:
    ctx = span.get_span_context()
    assert ctx is not None  # a finished span has one
    out = [b"\x0a\x10", ctx.trace_id.to_bytes(16, "big"), b"\x12\x08", ctx.span_id.to_bytes(8, "big")]
    if ctx.trace_state:
        out.append(_text(0x1A, ",".join(f"{k}={v}" for k, v in ctx.trace_state.items())))
    parent = span.parent
    if parent is not None:
        out += (b"\x22\x08", parent.span_id.to_bytes(8, "big"))
    out += (_text(0x2A, span.name), b"\x30", bytes((span.kind.value + 1,)),  # OTLP's kinds: the API's + 1
            b"\x39", _FIXED64(span.start_time or 0), b"\x41", _FIXED64(span.end_time or 0),
            _attributes(0x4A, span.attributes), _count(0x50, span.dropped_attributes))
    for event in span.events:
        out.append(_field(0x5A, b"\x09" + _FIXED64(event.timestamp) + _text(0x12, event.name)
                          + _attributes(0x1A, event.attributes) + _count(0x20, event.dropped_attributes)))
    out.append(_count(0x60, span.dropped_events))
    for link in span.links:
        out.append(_field(0x6A, b"\x0a\x10" + link.context.trace_id.to_bytes(16, "big") + b"\x12\x08"
                          + link.context.span_id.to_bytes(8, "big") + _attributes(0x22, link.attributes)
                          + _count(0x28, link.dropped_attributes) + b"\x35" + _flags(link.context)))
    out.append(_count(0x70, span.dropped_links))
    status = span.status
    if status is not None:
        out.append(_field(0x7A, (_text(0x12, status.description) if status.description else b"")
                          + _count(0x18, status.status_code.value)))
    out += (b"\x85\x01", _flags(parent))
    return b"".join(out)


def _scope(scope: InstrumentationScope | None) -> bytes:
    if scope is None:
        return b""
    return ((_text(0x0A, scope.name) if scope.name else b"") + (_text(0x12, scope.version) if scope.version else b"")
            + _attributes(0x1A, scope.attributes))


def encode(spans: Sequence[ReadableSpan]) -> bytes:
    """The serialized ExportTraceServiceRequest of `spans`: grouped by resource, then by
    instrumentation scope, in the order first seen, as the SDK groups them."""
    grouped: dict[Resource, dict[InstrumentationScope | None, list[bytes]]] = {}
    for span in spans:
        grouped.setdefault(span.resource, {}).setdefault(span.instrumentation_scope or None, []).append(_span(span))
    out = []
    for resource, scopes in grouped.items():
        body = [_field(0x0A, _attributes(0x0A, resource.attributes))]
        for scope, encoded in scopes.items():
            schema = scope.schema_url if scope is not None else None
            body.append(_field(0x12, _field(0x0A, _scope(scope)) + b"".join(_field(0x12, s) for s in encoded)
                               + (_text(0x1A, schema) if schema else b"")))
        if resource.schema_url:
            body.append(_text(0x1A, resource.schema_url))
        out.append(_field(0x0A, b"".join(body)))
    return b"".join(out)


def encode_spans(spans: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
    """`encode` as the SDK's `encode_spans` returns it: the message, parsed from the bytes in C
    (well under a microsecond a span) for the exporter to serialize again."""
    return ExportTraceServiceRequest.FromString(encode(spans))


def install() -> None:
    """The OTLP/HTTP span exporter encodes with `encode_spans`. Its module looks the encoder up
    by name at each export, in every SDK version Parley allows; replacing that name is the one
    seam that keeps the exporter's own endpoint, headers, compression, retries and size checks
    (a subclass would have to copy `export`, whose internals change between versions)."""
    from opentelemetry.exporter.otlp.proto.http import trace_exporter
    trace_exporter.encode_spans = encode_spans  # type: ignore[assignment]
