"""observability/: the rules pass promtool (syntax, and a unit test per alert), every alert has
its runbook entry, and the dashboards on disk are the ones observability/dashboards.py renders."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from observability import dashboards

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "observability" / "prometheus"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool: `make test` installs Debian's prometheus")


def alerts() -> list[dict[str, object]]:
    groups = yaml.safe_load((RULES / "rules.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


@needs_promtool
def test_the_rules_pass_promtool_check() -> None:
    subprocess.run([str(PROMTOOL), "check", "rules", "rules.yml"], cwd=RULES, check=True, capture_output=True)


@needs_promtool
def test_every_alert_passes_its_promtool_unit_tests() -> None:
    run = subprocess.run([str(PROMTOOL), "test", "rules", "rules.test.yml"], cwd=RULES, capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_every_alert_has_a_firing_unit_test() -> None:
    tests = yaml.safe_load((RULES / "rules.test.yml").read_text())["tests"]
    fired = {case["alertname"] for test in tests for case in test["alert_rule_test"] if case["exp_alerts"]}
    assert fired == {rule["alert"] for rule in alerts()}


def test_every_alert_has_a_runbook_entry_its_annotation_points_at() -> None:
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    headings = set(re.findall(r"^## (\w+)$", runbook, re.M))
    for rule in alerts():
        assert rule["alert"] in headings
        assert rule["annotations"]["runbook_url"] == f"docs/runbook.md#{str(rule['alert']).lower()}"  # type: ignore[index]


def test_the_dashboard_files_are_the_rendered_ones() -> None:
    on_disk = {path.name: path.read_text() for path in dashboards.OUT.glob("*.json")}
    assert on_disk == dashboards.rendered(), "run: python -m observability.dashboards"
