"""Per-hop latency of a whole topology, from every process's `/metrics` (see parley.hops).

Scrape each process before and after a measured window, subtract, merge the processes, and
read quantiles off the merged buckets the way Prometheus' `histogram_quantile` does (linear
within a bucket), so the numbers here are the ones a dashboard over the same data would show.
"""

from __future__ import annotations

import math
import time
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec
from prometheus_client.parser import text_string_to_metric_families

HOP_METRIC = "parley_hop_seconds"
INFO_METRIC = "parley_process_info"
REFUSED_METRIC = "parley_requests_refused"

#: hop -> cumulative counts by upper bound (seconds, +Inf last), as Prometheus exposes them.
Buckets = dict[float, float]


class Scrape(msgspec.Struct):
    """One process's hop histograms at one moment, and its requests refused so far."""

    role: str
    id: str
    hops: dict[str, Buckets]
    #: "code" or "code (cause)" -> requests answered with that error (gateways, chat-core)
    refused: dict[str, float] = {}


def parse(text: str) -> Scrape:
    role = ident = ""
    hops: dict[str, Buckets] = {}
    refused: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == INFO_METRIC:
            for sample in family.samples:
                role, ident = sample.labels["role"], sample.labels["id"]
        elif family.name == HOP_METRIC:
            for sample in family.samples:
                if sample.name == HOP_METRIC + "_bucket":
                    hops.setdefault(sample.labels["hop"], {})[float(sample.labels["le"])] = sample.value
        elif family.name == REFUSED_METRIC:
            for sample in family.samples:
                if sample.name == REFUSED_METRIC + "_total":
                    code, cause = sample.labels["code"], sample.labels["cause"]
                    refused[f"{code} ({cause})" if cause else code] = sample.value
    return Scrape(role, ident, hops, refused)


def scrape(url: str, timeout: float = 5.0) -> Scrape:
    """`url` is a process's base URL; a new connection each time (gateways share a port)."""
    with urllib.request.urlopen(url.rstrip("/") + "/metrics", timeout=timeout) as resp:
        return parse(resp.read().decode())


def scrape_all(client_url: str, processes: Sequence[Mapping[str, Any]] = (), timeout_s: float = 10.0) -> dict[str, Scrape]:
    """Every process, by id. `processes` is `parley up`'s topology.json list (empty: one `parley
    dev` at `client_url`). Gateways share the client port, where each new connection lands on
    any of them: ask until every gateway has answered."""
    found: dict[str, Scrape] = {}
    for proc in processes:
        if proc["role"] != "gateway":
            one = scrape(f"http://127.0.0.1:{proc['port']}")
            found[one.id] = one
    gateways = sum(1 for proc in processes if proc["role"] == "gateway") or 1
    deadline = time.monotonic() + timeout_s
    while sum(1 for one in found.values() if one.role in ("gateway", "dev")) < gateways:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {sorted(found)} answered on {client_url}/metrics")
        one = scrape(client_url)
        found[one.id] = one
    return found


def window(before: Scrape | None, after: Scrape) -> dict[str, Buckets]:
    """What one process observed between two scrapes (`before` None: since it started). A
    process whose counts went down restarted in between (same id, fresh counters): all it has
    counts, as since it started."""
    if before is None or any(count < before.hops.get(hop, {}).get(le, 0.0)
                             for hop, buckets in after.hops.items() for le, count in buckets.items()):
        return after.hops
    out: dict[str, Buckets] = {}
    for hop, buckets in after.hops.items():
        prior = before.hops.get(hop, {})
        out[hop] = {le: count - prior.get(le, 0.0) for le, count in buckets.items()}
    return out


def merge(parts: Iterable[Mapping[str, Buckets]]) -> dict[str, Buckets]:
    """The processes' windows added up: every process uses the same buckets (parley.hops)."""
    out: dict[str, Buckets] = {}
    for part in parts:
        for hop, buckets in part.items():
            merged = out.setdefault(hop, {})
            for le, count in buckets.items():
                merged[le] = merged.get(le, 0.0) + count
    return out


def merged_window(before: Mapping[str, Scrape], after: Mapping[str, Scrape]) -> dict[str, Buckets]:
    """Every process's window (scrapes by process id, as `scrape_all` returns them) added up; a
    process only in `after` counts from its start."""
    return merge(window(before.get(ident), scrape) for ident, scrape in after.items())


def refused_in_window(before: Mapping[str, Scrape], after: Mapping[str, Scrape]) -> dict[str, int]:
    """Requests refused between two `scrape_all`s, by code and cause, every process added up (a
    process whose counts went down restarted: all it has counts)."""
    out: dict[str, int] = {}
    for ident, now in after.items():
        prior = before[ident].refused if ident in before else {}
        if any(n < prior.get(key, 0.0) for key, n in now.refused.items()):
            prior = {}
        for key, n in now.refused.items():
            if added := int(n - prior.get(key, 0.0)):
                out[key] = out.get(key, 0) + added
    return out


def count(buckets: Buckets) -> int:
    return int(buckets.get(math.inf, 0.0))


def quantile(q: float, buckets: Buckets) -> float | None:
    """Seconds, as `histogram_quantile(q, ...)`: None without observations; the highest finite
    bound when the rank falls in the +Inf bucket."""
    bounds = sorted(buckets)
    total = buckets.get(math.inf, 0.0)
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for le in bounds:
        cumulative = buckets[le]
        if cumulative >= rank:
            if math.isinf(le):
                return lower
            if cumulative == below:
                return le
            return lower + (le - lower) * (rank - below) / (cumulative - below)
        lower, below = le, cumulative
    return lower
