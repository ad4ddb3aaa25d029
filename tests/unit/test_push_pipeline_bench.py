"""The pure parts of loadtests.push_pipeline_bench: the push worker's numbers read alike from
the in-process registry (`--system dev`) and from a `/metrics` text (`--system up`), and the
quantile of a window between two readings."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from loadtests.push_pipeline_bench import quantile
from loadtests.push_pipeline_systems import PushCounts, push_counts

BUCKETS = (0.05, 0.1, 0.5)


def worker_registry() -> CollectorRegistry:
    """The push worker's metrics under their names, in a registry of the test's own."""
    registry = CollectorRegistry()
    sent = Counter("parley_push_sent", "", ["provider"], registry=registry)
    sent.labels("fcm").inc(7)
    sent.labels("apns").inc(100)  # the bench sends to FCM only
    Counter("parley_push_retried", "", registry=registry).inc(2)
    Counter("parley_push_rate_limited", "", registry=registry)
    Counter("parley_push_duplicates_skipped", "", registry=registry).inc(1)
    stored = Histogram("parley_push_stored_to_provider_seconds", "", buckets=BUCKETS, registry=registry)
    for seconds in (0.01, 0.07, 0.07, 0.3):
        stored.observe(seconds)
    Histogram("parley_push_decision_to_provider_seconds", "", buckets=BUCKETS, registry=registry).observe(0.2)
    return registry


def test_the_worker_s_numbers_read_the_same_in_process_and_from_a_metrics_text() -> None:
    registry = worker_registry()
    in_process = push_counts(registry.collect())
    assert in_process == PushCounts(
        sent=7, retried=2, rate_limited=0, duplicates=1,
        stored_to_provider=[(0.05, 1), (0.1, 3), (0.5, 4), (float("inf"), 4)],
        decision_to_provider=[(0.05, 0), (0.1, 0), (0.5, 1), (float("inf"), 1)])
    assert push_counts(text_string_to_metric_families(generate_latest(registry).decode())) == in_process


def test_a_quantile_is_the_upper_bound_of_its_bucket_within_the_window() -> None:
    before = [(0.05, 100.0), (0.1, 100.0), (0.5, 100.0), (float("inf"), 100.0)]
    after = [(0.05, 150.0), (0.1, 198.0), (0.5, 200.0), (float("inf"), 200.0)]  # 50, 48, 2 since before
    assert quantile(0.5, before, after) == 0.05
    assert quantile(0.51, before, after) == 0.1
    assert quantile(0.99, before, after) == 0.5
