"""The Kafka topics' durability settings: read from the environment, refused at start when
Kafka could never meet them."""

from __future__ import annotations

import re

import pytest

from parley.config import Settings


def test_topics_default_to_one_copy_and_the_brokers_min_insync_replicas(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("PARLEY_KAFKA_REPLICATION_FACTOR", raising=False)
    monkeypatch.delenv("PARLEY_KAFKA_MIN_INSYNC_REPLICAS", raising=False)
    settings = Settings.from_env()
    assert (settings.kafka_replication_factor, settings.kafka_min_insync_replicas) == (1, None)


def test_replication_factor_and_min_insync_replicas_come_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PARLEY_KAFKA_REPLICATION_FACTOR", "3")
    monkeypatch.setenv("PARLEY_KAFKA_MIN_INSYNC_REPLICAS", "2")
    settings = Settings.from_env()
    assert (settings.kafka_replication_factor, settings.kafka_min_insync_replicas) == (3, 2)


@pytest.mark.parametrize("rf, min_isr, complaint", [
    ("0", "", "PARLEY_KAFKA_REPLICATION_FACTOR must be at least 1, not 0"),
    ("-1", "", "PARLEY_KAFKA_REPLICATION_FACTOR must be at least 1"),
    ("3", "4", "PARLEY_KAFKA_MIN_INSYNC_REPLICAS must be between 1 and PARLEY_KAFKA_REPLICATION_FACTOR (3), not 4"),
    ("", "2", "between 1 and PARLEY_KAFKA_REPLICATION_FACTOR (1), not 2"),  # the default RF is 1
    ("3", "0", "PARLEY_KAFKA_MIN_INSYNC_REPLICAS must be between 1"),
])
def test_durability_kafka_could_never_meet_stops_the_process_at_start(
        monkeypatch: pytest.MonkeyPatch, rf: str, min_isr: str, complaint: str):
    monkeypatch.setenv("PARLEY_KAFKA_REPLICATION_FACTOR", rf)
    monkeypatch.setenv("PARLEY_KAFKA_MIN_INSYNC_REPLICAS", min_isr)
    with pytest.raises(ValueError, match=re.escape(complaint)):
        Settings.from_env()


def test_min_insync_replicas_may_equal_the_replication_factor(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PARLEY_KAFKA_REPLICATION_FACTOR", "1")
    monkeypatch.setenv("PARLEY_KAFKA_MIN_INSYNC_REPLICAS", "1")  # tansu: one broker, one copy
    assert Settings.from_env().kafka_min_insync_replicas == 1
