"""Observability artefacts: Grafana dashboards (rendered by `dashboards.py` into `dashboards/`)
and Prometheus recording and alert rules with their promtool unit tests (`prometheus/`). The
code side (tracing, log format, metrics) lives in the kernel: parley/tracing.py, parley/logs.py,
parley/metrics.py."""
