"""Stage stamps and hop histograms (parley.hops), and reading them back (loadtests.hopstats)."""

from __future__ import annotations

import math

import pytest
from prometheus_client import REGISTRY, generate_latest

from loadtests import hopstats
from parley import hops
from parley.ports import Deliver
from parley.records import EventRecord


def observed(hop: str) -> float:
    return REGISTRY.get_sample_value("parley_hop_seconds_count", {"hop": hop}) or 0.0


def observed_sum(hop: str) -> float:
    return REGISTRY.get_sample_value("parley_hop_seconds_sum", {"hop": hop}) or 0.0


def test_each_stage_appends_its_stamp_and_observes_the_hop_that_ends_there() -> None:
    t_ns = [1_000_000_000]
    expected = [1_000_000_000]
    for stage in list(hops.Stage)[1:]:
        before, before_sum = observed(hops.HOP_TO[stage]), observed_sum(hops.HOP_TO[stage])
        now = t_ns[-1] + 2_000_000 * stage  # stage n is 2n ms after the one before
        t_ns = hops.stamp(t_ns, stage, now)
        expected.append(now)
        assert t_ns == expected
        assert observed(hops.HOP_TO[stage]) == before + 1
        assert observed_sum(hops.HOP_TO[stage]) - before_sum == pytest.approx(0.002 * stage)


def test_the_gateway_push_also_observes_the_whole_pipeline() -> None:
    before, before_sum = observed("pipeline"), observed_sum("pipeline")
    hops.stamp([0, 1, 2, 3, 4, 5], hops.Stage.GATEWAY_PUSH, 250_000_000)
    assert observed("pipeline") == before + 1
    assert observed_sum("pipeline") - before_sum == pytest.approx(0.25)


@pytest.mark.parametrize("t_ns", [[], [1], [1, 2, 3, 4]], ids=["unstamped", "short", "long"])
def test_a_stamp_list_of_the_wrong_length_is_left_alone_and_not_observed(t_ns: list[int]) -> None:
    before = observed("core_store")
    assert hops.stamp(t_ns, hops.Stage.STORED) is t_ns
    assert observed("core_store") == before


def test_restamp_copies_only_when_it_stamps() -> None:
    record = EventRecord("c1", b"{}", t_ns=[1, 2])
    stamped = hops.restamp(record, hops.Stage.STORED, 3)
    assert stamped.t_ns == [1, 2, 3] and record.t_ns == [1, 2]
    assert hops.restamp(record, hops.Stage.BUS_PUBLISH) is record
    deliver = Deliver(["u1"], b"{}", t_ns=[1, 2, 3, 4, 5, 6])
    assert hops.restamp(deliver, hops.Stage.GATEWAY_PUSH, 7).t_ns == [1, 2, 3, 4, 5, 6, 7]


def test_a_scrape_of_this_process_reads_back_its_role_and_hops() -> None:
    hops.register_process("test-role", "test-id")
    scrape = hopstats.parse(generate_latest(REGISTRY).decode())
    assert (scrape.role, scrape.id) == ("test-role", "test-id")
    assert hopstats.count(scrape.hops["core_store"]) == observed("core_store")


def buckets(*pairs: tuple[float, float]) -> hopstats.Buckets:
    return dict(pairs)


def test_quantiles_interpolate_within_a_bucket_as_prometheus_does() -> None:
    # 10 observations <= 10 ms, 10 more in (10, 20] ms, none above.
    b = buckets((0.01, 10), (0.02, 20), (math.inf, 20))
    assert hopstats.quantile(0.5, b) == pytest.approx(0.01)
    assert hopstats.quantile(0.75, b) == pytest.approx(0.015)
    assert hopstats.quantile(0.25, b) == pytest.approx(0.005)
    assert hopstats.quantile(0.99, buckets((0.01, 0), (0.02, 0), (math.inf, 0))) is None
    # A rank in the +Inf bucket reads as the highest finite bound.
    assert hopstats.quantile(0.99, buckets((0.01, 5), (0.02, 5), (math.inf, 10))) == pytest.approx(0.02)


def test_windows_subtract_and_processes_add_up() -> None:
    before = hopstats.Scrape("gateway", "g1", {"pipeline": buckets((0.01, 3), (math.inf, 4))})
    after = hopstats.Scrape("gateway", "g1", {"pipeline": buckets((0.01, 5), (math.inf, 9)),
                                              "bus_to_gateway": buckets((0.01, 1), (math.inf, 1))})
    mine = hopstats.window(before, after)
    assert mine == {"pipeline": {0.01: 2, math.inf: 5}, "bus_to_gateway": {0.01: 1, math.inf: 1}}
    other = hopstats.window(None, hopstats.Scrape("gateway", "g2", {"pipeline": buckets((0.01, 1), (math.inf, 1))}))
    merged = hopstats.merge([mine, other])
    assert merged["pipeline"] == {0.01: 3, math.inf: 6}
    assert hopstats.count(merged["pipeline"]) == 6


def test_refused_requests_are_read_per_code_and_cause_and_counted_per_window() -> None:
    text = ('# TYPE parley_requests_refused_total counter\n'
            'parley_requests_refused_total{code="unavailable",cause="StorageError"} 7.0\n'
            'parley_requests_refused_total{code="rate_limited",cause=""} 2.0\n')
    assert hopstats.parse(text).refused == {"unavailable (StorageError)": 7.0, "rate_limited": 2.0}
    before = {"g1": hopstats.Scrape("gateway", "g1", {}, {"unavailable (StorageError)": 5.0}),
              "g2": hopstats.Scrape("gateway", "g2", {}, {"rate_limited": 4.0})}
    after = {"g1": hopstats.Scrape("gateway", "g1", {}, {"unavailable (StorageError)": 7.0, "rate_limited": 1.0}),
             "g2": hopstats.Scrape("gateway", "g2", {}, {"rate_limited": 1.0}),  # restarted: 1 since
             "g3": hopstats.Scrape("gateway", "g3", {}, {"rate_limited": 3.0})}  # new
    assert hopstats.refused_in_window(before, after) == {"unavailable (StorageError)": 2, "rate_limited": 5}
