"""Observability: OpenTelemetry setup, log format, dashboards (arrives with the observability issue)."""
