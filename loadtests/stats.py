"""The numbers of a measured step, merged over the load processes: counts, and nearest-rank
percentiles of the latencies each process recorded; and whether a step was good.
"""

from __future__ import annotations

import array
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from loadtests.slices import StepResult


def _merge_arrays(parts: Sequence[bytes]) -> array.array[int]:
    out: array.array[int] = array.array("q")
    for part in parts:
        out.frombytes(part)
    return out


def percentiles(values_us: array.array[int]) -> dict[str, float | None]:
    """Nearest-rank percentiles, in milliseconds."""
    if not values_us:
        return {k: None for k in ("p50", "p95", "p99", "p999", "max")}
    ordered = sorted(values_us)
    n = len(ordered)

    def at(q: float) -> float:
        return ordered[min(n - 1, max(0, math.ceil(q * n) - 1))] / 1000

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "p999": at(0.999),
            "max": ordered[-1] / 1000}


def merge_steps(parts: Sequence[StepResult]) -> dict[str, Any]:
    errors: Counter[str] = Counter()
    for p in parts:
        errors.update(p.errors)
    return {
        "scheduled": sum(p.scheduled for p in parts),
        "acked": sum(p.acked for p in parts),
        "errors": dict(errors),
        "unanswered": sum(p.unanswered for p in parts),
        "lost": sum(p.lost for p in parts),
        "missing_receipts": sum(p.missing_receipts for p in parts),
        "late_receipts": sum(p.duplicate_or_late for p in parts),
        "acks_in_window": sum(p.acks_in_window for p in parts),
        "deliveries_in_window": sum(p.deliveries_in_window for p in parts),
        "latency_ms": percentiles(_merge_arrays([p.latency_us for p in parts])),
        "receipts_timed": sum(len(p.latency_us) // 8 for p in parts),
        "ack_ms": percentiles(_merge_arrays([p.ack_us for p in parts])),
        "send_lag_ms": percentiles(_merge_arrays([p.lag_us for p in parts])),
        "generator_cpu_s": sum(p.cpu_s for p in parts),
        "sessions_dropped": sum(p.sessions_dropped for p in parts),
        "generator_rss": sum(p.generator_rss for p in parts),
    }


def step_is_good(m: dict[str, Any], p99_ms: float) -> bool:
    p99 = m["latency_ms"]["p99"]
    return (p99 is not None and p99 <= p99_ms and m["lost"] == 0 and not m["errors"]
            and m["unanswered"] == 0 and m["sessions_dropped"] == 0)
