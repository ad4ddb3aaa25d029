"""The pure parts of the benchmark's `--topology up` mode: per-role CPU and RSS over a window,
cores per 1,000 sends/s, and the per-hop table (loadtests.usage, loadtests.hoptable)."""

from __future__ import annotations

import math

import pytest

from loadtests import hopstats, hoptable, usage
from loadtests.usage import Member, ProcSample

MIB = 2**20

TOPOLOGY = {
    "port": 8080,
    "brokers": {"kafka": {"address": "127.0.0.1:1", "pid": 10}, "nats": {"address": "127.0.0.1:2", "pid": 11},
                "redis": {"address": "127.0.0.1:3", "pid": None}},
    "processes": [
        {"name": "chat-core-1", "role": "chat-core", "port": 5, "pid": 20, "restarts": 0, "log": "x"},
        {"name": "gateway-1", "role": "gateway", "port": 8080, "pid": 30, "restarts": 0, "log": "x"},
        {"name": "gateway-2", "role": "gateway", "port": 8080, "pid": 31, "restarts": 0, "log": "x"},
    ],
}


def proc(name: str, role: str, pid: int, cpu_s: float, rss_mib: int, main_s: float | None = None) -> ProcSample:
    return ProcSample(name, role, pid, cpu_s, rss_mib * MIB, main_s)


def by_role(roles: list[usage.RoleUsage]) -> dict[str, usage.RoleUsage]:
    return {r.role: r for r in roles}


def test_members_are_the_brokers_and_the_processes_of_topology_json_with_a_pid() -> None:
    assert usage.members_of(TOPOLOGY) == [
        Member("kafka", "kafka", 10), Member("nats", "nats", 11),
        Member("chat-core-1", "chat-core", 20), Member("gateway-1", "gateway", 30), Member("gateway-2", "gateway", 31),
    ]


def test_a_roles_cpu_is_the_sum_of_its_processes_over_the_window_and_its_rss_the_sum_at_the_end() -> None:
    before = [proc("gateway-1", "gateway", 30, 10.0, 50, 8.0), proc("gateway-2", "gateway", 31, 20.0, 60, 15.0),
              proc("kafka", "kafka", 10, 5.0, 100)]
    after = [proc("gateway-1", "gateway", 30, 13.0, 55, 10.0), proc("gateway-2", "gateway", 31, 21.0, 70, 15.5),
             proc("kafka", "kafka", 10, 7.0, 120)]
    roles = by_role(usage.role_usage(before, after, wall_s=10.0))
    gateway = roles["gateway"]
    assert (gateway.processes, gateway.cpu_s, gateway.rss_end) == (2, pytest.approx(4.0), 125 * MIB)
    assert gateway.cpu_pct == pytest.approx(40.0)
    assert gateway.loop_cpu_s == pytest.approx(2.5)
    assert roles["kafka"].cpu_pct == pytest.approx(20.0)
    assert roles["kafka"].loop_cpu_s is None  # a broker has no event-loop thread of ours


def test_roles_come_in_pipeline_order_with_the_load_generator_last() -> None:
    samples = [proc("b", "bench", 1, 0, 1), proc("r", "redis", 2, 0, 1), proc("g", "gateway", 3, 0, 1),
               proc("d", "delivery", 4, 0, 1), proc("c", "chat-core", 5, 0, 1), proc("k", "kafka", 6, 0, 1),
               proc("n", "nats", 7, 0, 1)]
    roles = usage.role_usage(samples, samples, 1.0)
    assert [r.role for r in roles] == ["gateway", "chat-core", "delivery", "kafka", "nats", "redis", "bench"]


def test_a_child_restarted_in_the_window_counts_all_its_cpu_and_the_dead_one_is_reported_gone() -> None:
    before = [proc("chat-core-1", "chat-core", 20, 100.0, 40, 50.0)]
    after = [proc("chat-core-1", "chat-core", 21, 1.5, 30, 1.0)]  # same name, new pid
    core = by_role(usage.role_usage(before, after, 5.0))["chat-core"]
    assert (core.processes, core.cpu_s, core.new, core.gone) == (1, 1.5, 1, 1)
    assert core.cpu_s >= 0


def test_the_total_is_the_server_without_the_load_generator() -> None:
    before = [proc("g", "gateway", 1, 0.0, 10, 0.0), proc("k", "kafka", 2, 0.0, 20), proc("b", "bench", 3, 0.0, 30, 0.0)]
    after = [proc("g", "gateway", 1, 2.0, 10, 1.0), proc("k", "kafka", 2, 1.0, 20), proc("b", "bench", 3, 5.0, 30, 4.0)]
    total = usage.total(usage.role_usage(before, after, 10.0))
    assert (total.processes, total.cpu_s, total.rss_end) == (2, pytest.approx(3.0), 30 * MIB)
    assert total.cpu_pct == pytest.approx(30.0)
    assert total.loop_cpu_s == pytest.approx(1.0)


@pytest.mark.parametrize(("cpu_s", "wall_s", "sends", "expected"), [
    (10.0, 10.0, 1000.0, 1.0),   # one core busy at 1,000 sends/s
    (5.0, 10.0, 250.0, 2.0),     # half a core at 250 sends/s: 2 cores per 1,000
    (3.0, 30.0, 50.0, 2.0),
])
def test_cores_per_1000_sends_per_second(cpu_s: float, wall_s: float, sends: float, expected: float) -> None:
    assert usage.cores_per_1000(cpu_s, wall_s, sends) == pytest.approx(expected)


def test_cores_per_1000_is_unknown_without_sends_or_time() -> None:
    assert usage.cores_per_1000(1.0, 10.0, 0.0) is None
    assert usage.cores_per_1000(1.0, 0.0, 100.0) is None


def test_the_role_table_has_a_line_per_role_then_the_total_then_the_generator() -> None:
    before = [proc("g", "gateway", 1, 0.0, 10, 0.0), proc("b", "bench", 3, 0.0, 30, 0.0)]
    after = [proc("g", "gateway", 1, 2.0, 10, 1.0), proc("b", "bench", 3, 5.0, 30, 4.0)]
    lines = usage.role_lines(usage.role_usage(before, after, 10.0), 10.0, 100.0)
    assert [line.split()[0] for line in lines] == ["role", "gateway", "total", "bench"]
    assert lines[1].split()[1:5] == ["1", "20%", "10%", "2.000"]  # 0.2 cores at 0.1 k sends/s
    as_json = usage.usage_json(usage.role_usage(before, after, 10.0), 10.0, 100.0)
    assert as_json["gateway"]["cores_per_1000_sends_per_s"] == pytest.approx(2.0)
    assert set(as_json) == {"gateway", "bench", "total"}


def scrape(ident: str, hops: dict[str, dict[float, float]]) -> hopstats.Scrape:
    return hopstats.Scrape("gateway", ident, hops)


def buckets(*counts: float) -> dict[float, float]:
    """Cumulative counts at 1 ms, 10 ms, 100 ms, +Inf."""
    return dict(zip((0.001, 0.01, 0.1, math.inf), counts))


def test_hops_are_merged_across_processes_and_listed_in_pipeline_order() -> None:
    before = {"gw-1": scrape("gw-1", {"pipeline": buckets(0, 10, 10, 10)})}
    after = {"gw-1": scrape("gw-1", {"pipeline": buckets(0, 30, 30, 30)}),
             "gw-2": scrape("gw-2", {"pipeline": buckets(0, 0, 20, 20), "bus_to_gateway": buckets(5, 5, 5, 5)})}
    rows = hoptable.hop_rows(hopstats.merged_window(before, after))
    assert [r.hop for r in rows] == ["gateway_to_core", "core_store", "outbox_wait", "relay_to_delivery",
                                     "delivery_fanout", "bus_to_gateway", "pipeline", "gateway_publish_ack",
                                     "relay_publish_ack"]
    pipeline = next(r for r in rows if r.hop == "pipeline")
    assert pipeline.count == 40  # 20 more on gw-1, 20 since gw-2 started
    assert pipeline.p50_ms == pytest.approx(10.0)  # rank 20 = the 20 of gw-1 under 10 ms
    assert pipeline.p99_ms is not None and 10.0 < pipeline.p99_ms <= 100.0
    unobserved = next(r for r in rows if r.hop == "core_store")
    assert (unobserved.count, unobserved.p50_ms, unobserved.p99_ms) == (0, None, None)


def test_a_process_whose_counts_went_down_restarted_and_counts_from_its_start() -> None:
    before = {"core-1": scrape("core-1", {"core_store": buckets(100, 100, 100, 100)})}
    after = {"core-1": scrape("core-1", {"core_store": buckets(3, 3, 3, 3)})}
    merged = hopstats.merged_window(before, after)
    assert hopstats.count(merged["core_store"]) == 3


def test_the_hop_table_prints_count_p50_and_p99_per_hop() -> None:
    rows = [hoptable.HopRow("pipeline", 40, 10.0, 123.4), hoptable.HopRow("core_store", 0, None, None)]
    lines = hoptable.hop_lines(rows)
    assert lines[0].split() == ["hop", "count", "p50", "ms", "p99", "ms"]
    assert lines[1].split() == ["pipeline", "40", "10.0", "123"]
    assert lines[2].split() == ["core_store", "0", "-", "-"]
    assert hoptable.hops_json(rows)[0] == {"hop": "pipeline", "count": 40, "p50_ms": 10.0, "p99_ms": 123.4}
