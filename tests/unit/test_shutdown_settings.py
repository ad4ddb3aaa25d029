"""Shutdown timings are settings, so an orchestrator's grace period can be sized from them."""

from __future__ import annotations

import pytest

from parley.config import Settings


def test_shutdown_timings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = Settings.from_env()
    assert (defaults.limits.drain_timeout_s, defaults.shutdown_timeout_s) == (5.0, 10.0)
    monkeypatch.setenv("PARLEY_DRAIN_TIMEOUT_S", "2.5")
    monkeypatch.setenv("PARLEY_SHUTDOWN_TIMEOUT_S", "20")
    settings = Settings.from_env()
    assert (settings.limits.drain_timeout_s, settings.shutdown_timeout_s) == (2.5, 20.0)
