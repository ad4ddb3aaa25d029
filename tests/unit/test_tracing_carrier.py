"""The trace context's carrier: a W3C traceparent that survives the round trip, a malformed one
from elsewhere that is ignored rather than breaking a hop, and records from before the field
that still decode (old outbox rows)."""

from __future__ import annotations

import msgspec

from parley import tracing
from parley.records import EventRecord


def test_a_traceparent_round_trips() -> None:
    carrier = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    ctx = tracing.parse(carrier)
    assert ctx is not None and ctx.is_remote and ctx.trace_flags.sampled
    assert tracing.traceparent(ctx) == carrier


def test_a_malformed_traceparent_is_no_context() -> None:
    for bad in (None, "", "garbage", "00-xyz-00f067aa0ba902b7-01", "00-" + "0" * 32 + "-" + "0" * 16 + "-01",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"):
        assert tracing.parse(bad) is None, bad


def test_with_tracing_off_nothing_is_made_or_carried() -> None:
    assert not tracing.enabled()
    assert tracing.start("x", None) is None and tracing.current() is None and tracing.ids() is None
    record = EventRecord("c", b"{}", trace="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    assert tracing.hop([record], "relay.publish", tracing.SpanKind.PRODUCER) == ([record], [])


def test_an_outbox_row_stored_before_the_field_decodes_without_a_trace() -> None:
    class OldRecord(msgspec.Struct, array_like=True):  # EventRecord as stored before tracing
        conv: str
        frame: bytes
        to: list[str] | None = None
        also: list[str] | None = None
        members_changed: bool = False
        t_ns: list[int] = []

    old = msgspec.msgpack.encode(OldRecord("c", b"{}", t_ns=[1, 2, 3]))
    decoded = msgspec.msgpack.decode(old, type=EventRecord)
    assert (decoded.t_ns, decoded.trace) == ([1, 2, 3], None)
