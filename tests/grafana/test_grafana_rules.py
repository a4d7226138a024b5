"""The Prometheus rules: valid for promtool, unit-tested, documented, and on declared series only."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from dashboard_files import RULES_DIR, load_dashboards, panels_with_queries

from grafana.query_check import declared_series, grafana_to_promql, problems, rule_files_default

PROMTOOL = "promtool"
RULES = RULES_DIR / "rules.yml"
UNIT_TESTS = sorted((RULES_DIR / "tests").glob("*_test.yml"))
REQUIRED_ALERTS = {
    "CognocientRunBlockedByBudget",
    "CognocientMonthlyBudget80Percent",
    "CognocientMonthlyBudgetExhausted",
    "CognocientSpendRateAnomaly",
    "CognocientRunLoopDetected",
    "CognocientRunManySteps",
    "CognocientCollectorRejectingSpans",
    "CognocientCollectorDown",
}


def _promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def _rules() -> list[dict]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def _alerts() -> dict[str, dict]:
    return {rule["alert"]: rule for rule in _rules() if "alert" in rule}


def test_promtool_check_rules_passes() -> None:
    result = _promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    assert UNIT_TESTS
    result = _promtool("test", "rules", *[path.name for path in UNIT_TESTS], cwd=RULES_DIR / "tests")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAILED" not in result.stdout + result.stderr


def test_promtool_unit_tests_can_fail(tmp_path: Path) -> None:
    """A unit test expecting the wrong thing fails: the suite above is not vacuous."""
    (tmp_path / "rules.yml").write_text(RULES.read_text())
    wrong = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [{"series": 'up{job="cognocient-collector", instance="c:9464"}',
                              "values": "1x10"}],
            "alert_rule_test": [{"eval_time": "5m", "alertname": "CognocientCollectorDown",
                                 "exp_alerts": [{"exp_labels": {"severity": "critical"}}]}],
        }],
    }
    (tmp_path / "wrong_test.yml").write_text(yaml.safe_dump(wrong))
    assert _promtool("test", "rules", "wrong_test.yml", cwd=tmp_path).returncode != 0


def test_the_required_alerts_exist_with_runbook_annotations() -> None:
    alerts = _alerts()
    assert set(alerts) >= REQUIRED_ALERTS
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        for annotation in ("summary", "description", "runbook"):
            assert rule["annotations"].get(annotation, "").strip(), f"{name} lacks {annotation}"


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for path in UNIT_TESTS:
        for case in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    alerts = set(_alerts())
    assert alerts - firing == set(), "alerts never tested firing"
    assert alerts - silent == set(), "alerts never tested not firing"


def test_every_rule_uses_only_declared_metrics_and_labels() -> None:
    declared = declared_series(rule_files_default())
    for rule in _rules():
        assert problems(rule["expr"], declared) == [], rule.get("alert") or rule.get("record")


def test_recording_rule_names_follow_the_level_metric_operation_convention() -> None:
    for rule in _rules():
        if "record" in rule:
            level, metric, operation = rule["record"].split(":")
            assert level and metric.startswith("cognocient_") and operation, rule["record"]


def test_every_panel_query_parses_in_prometheus_own_parser(tmp_path: Path) -> None:
    """promtool parses each panel expression (variables substituted) as a recording rule."""
    rules = []
    for name, board in load_dashboards().items():
        for panel in panels_with_queries(board):
            for target in panel["targets"]:
                rules.append({"record": f"panel:query_{len(rules)}:check",
                              "expr": grafana_to_promql(target["expr"]), "labels": {"dashboard": name}})
    path = tmp_path / "panel_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    result = _promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


@pytest.mark.parametrize("bad", ["sum(rate(cognocient_llm_calls_total[5m])",
                                 "rate(cognocient_llm_calls_total)"])
def test_promtool_refuses_a_bad_expression(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "bad.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [{"record": "a:b:c", "expr": bad}]}]}))
    assert _promtool("check", "rules", str(path)).returncode != 0
