"""Parley's Grafana dashboards, as data: `python -m observability.dashboards` writes them to
observability/dashboards/*.json (Grafana's JSON model, importable as they are, and the
ConfigMaps of the Helm chart). Written from here so that every panel has the same shape and the
files are never edited by hand (a test checks they match).

Each panel's expression is evaluated against a real Prometheus scraping `parley up` in the
tests (tests/integration/test_prometheus.py): every one must return series.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

OUT = Path(__file__).resolve().parent / "dashboards"


@dataclass(frozen=True)
class Panel:
    title: str
    expr: str
    #: Grafana unit: "s", "ops" (per second), "short", "percentunit".
    unit: str = "short"
    #: Series label in the legend (Grafana's `{{label}}` syntax).
    legend: str = ""


def _p99(hop_filter: str, by: str = "") -> str:
    group = f"le, {by}" if by else "le"
    return f"histogram_quantile(0.99, sum by ({group}) (rate(parley_hop_seconds_bucket{{{hop_filter}}}[5m])))"


DASHBOARDS: dict[str, tuple[str, list[Panel]]] = {
    "overview": ("Parley: overview", [
        Panel("Sends per second", "parley:sends:rate1m", "ops"),
        Panel("Deliveries per second", "parley:deliveries:rate1m", "ops"),
        Panel("End-to-end p99 (SLO: 1 s)", "parley:pipeline_seconds:p99_5m", "s"),
        Panel("Connections", "sum(parley_gateway_connections)"),
        Panel("Connect success ratio (SLO: 99%)", "parley:connect_success:ratio5m", "percentunit"),
        Panel("Server-fault answer ratio (SLO: < 1%)", "parley:request_errors:ratio5m", "percentunit"),
        Panel("Consumer lag by topic", "parley:consumer_lag:sum", legend="{{topic}}"),
        Panel("Oldest unrelayed event", "max(parley_outbox_oldest_seconds)", "s"),
        Panel("Processes up by role", "count by (role) (parley_process_info)", legend="{{role}}"),
    ]),
    "gateway": ("Parley: gateway", [
        Panel("Connections per gateway", "parley_gateway_connections", legend="{{instance}}"),
        Panel("Connects by result", "sum by (result) (rate(parley_gateway_connects_total[1m]))", "ops",
              "{{result}}"),
        Panel("Disconnects by close code", "sum by (code) (rate(parley_gateway_disconnects_total[1m]))", "ops",
              "{{code}}"),
        Panel("Requests by op and code", "sum by (op, code) (rate(parley_requests_total[1m]))", "ops",
              "{{op}} {{code}}"),
        Panel("Refusals by code and cause", "sum by (code, cause) (rate(parley_requests_refused_total[1m]))",
              "ops", "{{code}} {{cause}}"),
        Panel("Rate-limit refusals by limit", "sum by (limit) (rate(parley_rate_limited_total[1m]))", "ops",
              "{{limit}}"),
        Panel("Policy denials by rule", "sum by (rule) (rate(parley_policy_denials_total[1m]))", "ops", "{{rule}}"),
        Panel("Send-queue overflows (4008)", "sum(rate(parley_gateway_queue_overflows_total[5m]))", "ops"),
        Panel("Event-loop lag p99 by role", "parley:event_loop_lag_seconds:p99_5m", "s", "{{job}}"),
    ]),
    "pipeline": ("Parley: pipeline per hop", [
        Panel("p99 by hop", _p99('hop!="pipeline"', "hop"), "s", "{{hop}}"),
        Panel("p50 by hop", "histogram_quantile(0.5, sum by (le, hop) (rate(parley_hop_seconds_bucket[5m])))",
              "s", "{{hop}}"),
        Panel("End to end p50 / p99", _p99('hop="pipeline"'), "s"),
        Panel("Messages through each hop", "sum by (hop) (rate(parley_hop_seconds_count[1m]))", "ops", "{{hop}}"),
        Panel("Consumer lag per partition", "sum by (topic, partition) (parley_consumer_lag)",
              legend="{{topic}}/{{partition}}"),
        Panel("Relay lag p99 (outbox wait)", _p99('hop="outbox_wait"'), "s"),
        Panel("Outbox pending", "sum(parley_outbox_pending)"),
        Panel("Writes answered by chat-core", 'sum by (code) (rate(parley_requests_total{job="parley-chat-core"}[1m]))',
              "ops", "{{code}}"),
    ]),
    "storage": ("Parley: storage", [
        Panel("Store write p99 (batch commit)", _p99('hop="core_store"'), "s"),
        Panel("Log publish ack p99", _p99('hop=~"gateway_publish_ack|relay_publish_ack"', "hop"), "s", "{{hop}}"),
        Panel("Oldest unrelayed event", "max(parley_outbox_oldest_seconds)", "s"),
        Panel("Outbox pending per chat-core", "parley_outbox_pending", legend="{{instance}}"),
        Panel("Refused answers by code and cause",
              'sum by (code, cause) (rate(parley_requests_refused_total[5m]))', "ops", "{{code}} {{cause}}"),
    ]),
    "push-and-calls": ("Parley: push and calls", [
        # Push's sender counts its outcomes, but push is not wired to the pipeline yet (no role
        # of `parley up` sends); calls export nothing yet and have no protocol ops.
        Panel("Pushes by provider and outcome", "sum by (provider, outcome) (rate(parley_push_total[5m]))", "ops",
              "{{provider}} {{outcome}}"),
        Panel("Push failure ratio (SLO: < 5%)", "parley:push_failures:ratio10m", "percentunit", "{{provider}}"),
        Panel("Sends that may notify offline members", 'sum(rate(parley_requests_total{op="send",code="ok"}[5m]))',
              "ops"),
        Panel("Processes by role", "count by (role) (parley_process_info)", legend="{{role}}"),
    ]),
}


def render(title: str, panels: list[Panel]) -> dict[str, object]:
    """Grafana's dashboard JSON model: one timeseries panel per `Panel`, two a row."""
    return {
        "title": title,
        "uid": "parley-" + title.split(": ", 1)[1].replace(" ", "-"),
        "schemaVersion": 39,
        "tags": ["parley"],
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus"}]},
        "panels": [{
            "id": n + 1,
            "type": "timeseries",
            "title": panel.title,
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "gridPos": {"h": 8, "w": 12, "x": 12 * (n % 2), "y": 8 * (n // 2)},
            "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
            "targets": [{"refId": "A", "expr": panel.expr, "legendFormat": panel.legend}],
        } for n, panel in enumerate(panels)],
    }


def rendered() -> dict[str, str]:
    """File name -> its JSON text."""
    return {f"{name}.json": json.dumps(render(title, panels), indent=2) + "\n"
            for name, (title, panels) in DASHBOARDS.items()}


def write(out: Path, files: dict[str, str]) -> int:
    """Each rendered file into `out` (the entry point of this module and of observability.k8s)."""
    out.mkdir(exist_ok=True)
    for name, text in files.items():
        (out / name).write_text(text)
    print(f"wrote {', '.join(files)} to {out}", file=sys.stderr)
    return 0


def main() -> int:
    return write(OUT, rendered())


if __name__ == "__main__":
    raise SystemExit(main())
