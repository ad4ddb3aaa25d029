"""The metrics: every `parley_*` series is documented in docs/operations.md with its labels, no
label can carry an id, and the counters move when what they count happens."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

from parley import health, hops, metrics
from parley import frames as F
from parley.errors import Forbidden, NotFound, RateLimited
from parley.ratelimit import Limiter

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
#: Labels whose values come from a fixed set (ops, codes, rules, limits, log topics/partitions, ...).
BOUNDED_LABELS = {"role", "id", "hop", "code", "cause", "op", "rule", "limit", "result", "topic", "partition",
                  "provider", "outcome"}


def declared() -> dict[str, tuple[str, tuple[str, ...]]]:
    """name as exposed -> (type, labels), for every metric object of Parley's modules."""
    found = {}
    for module in (hops, health, metrics):
        for value in vars(module).values():
            if isinstance(value, MetricWrapperBase) and value._name.startswith("parley_"):
                exposed = value._name + ("_total" if value._type == "counter" else "")
                found[exposed] = (value._type, tuple(value._labelnames))
    return found


def documented() -> dict[str, tuple[str, tuple[str, ...]]]:
    rows = re.findall(r"^\| `(parley_\w+)` \| (\w+) \|([^|]*)\|", DOC.read_text(), re.M)
    return {name: (kind, tuple(re.findall(r"`(\w+)`", labels))) for name, kind, labels in rows}


def test_every_metric_is_documented_with_its_type_and_labels() -> None:
    assert declared() == documented()


def test_no_label_can_hold_an_id() -> None:
    for name, (_, labels) in declared().items():
        assert set(labels) <= BOUNDED_LABELS, name


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_answers_are_counted_by_op_and_code_and_denials_by_rule() -> None:
    send = F.Send(rid="r", conv="c", cmid="m", text="hi")
    before = (value("parley_requests_total", op="send", code="ok"),
              value("parley_requests_total", op="send", code="forbidden"),
              value("parley_policy_denials_total", rule="slow_mode"))
    metrics.answered(send)
    metrics.answered(send, Forbidden("slow down", rule="slow_mode"))
    metrics.answered(send, NotFound("no such conversation"))
    assert (value("parley_requests_total", op="send", code="ok"),
            value("parley_requests_total", op="send", code="forbidden"),
            value("parley_policy_denials_total", rule="slow_mode")) == (before[0] + 1, before[1] + 1, before[2] + 1)
    assert value("parley_requests_total", op="send", code="not_found") >= 1


async def test_a_rate_limit_refusal_is_counted_by_its_limit() -> None:
    limiter = Limiter("test limit", burst=1, window_s=60)
    before = value("parley_rate_limited_total", limit="test limit")
    await limiter.hit("alice")
    with pytest.raises(RateLimited):
        await limiter.hit("alice")
    assert value("parley_rate_limited_total", limit="test limit") == before + 1


async def test_event_loop_lag_is_observed() -> None:
    before = value("parley_event_loop_lag_seconds_count")
    task = asyncio.create_task(metrics.watch_event_loop(every_s=0.01))
    await asyncio.sleep(0.1)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert value("parley_event_loop_lag_seconds_count") > before
