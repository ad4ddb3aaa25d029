"""The per-hop table of one measured window: what every process observed between two scrapes
(loadtests.hopstats), merged, as count / p50 / p99 per hop in pipeline order."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from loadtests import hopstats
from parley import hops

#: The write's hops in the order it takes them, then the whole trip, then the broker-ack waits
#: (which sit inside the next hop).
HOP_ORDER = (*hops.HOP_TO.values(), "pipeline", "gateway_publish_ack", "relay_publish_ack")


class HopRow(msgspec.Struct, frozen=True):
    hop: str
    count: int
    p50_ms: float | None
    p99_ms: float | None


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else 1000 * seconds


def hop_rows(merged: Mapping[str, hopstats.Buckets]) -> list[HopRow]:
    """One row per hop: the known hops in pipeline order (even if unobserved), then any others."""
    names = [*HOP_ORDER, *sorted(set(merged) - set(HOP_ORDER))]
    rows = []
    for hop in names:
        buckets = merged.get(hop, {})
        rows.append(HopRow(hop, hopstats.count(buckets), _ms(hopstats.quantile(0.5, buckets)),
                           _ms(hopstats.quantile(0.99, buckets))))
    return rows


def _fmt(ms: float | None) -> str:
    return "-" if ms is None else (f"{ms:.1f}" if ms < 100 else f"{ms:.0f}")


def hop_lines(rows: list[HopRow]) -> list[str]:
    lines = [f"  {'hop':<20} {'count':>8} {'p50 ms':>8} {'p99 ms':>8}"]
    lines += [f"  {r.hop:<20} {r.count:>8} {_fmt(r.p50_ms):>8} {_fmt(r.p99_ms):>8}" for r in rows]
    return lines


def hops_json(rows: list[HopRow]) -> list[dict[str, Any]]:
    return [msgspec.structs.asdict(r) for r in rows]
