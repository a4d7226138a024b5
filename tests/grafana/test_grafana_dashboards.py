"""The committed dashboards are what the code generates, and query only declared series."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from dashboard_files import DASHBOARD_DIR, panels_with_queries

from grafana.dashboards import build
from grafana.query_check import (
    declared_series,
    grafana_to_promql,
    problems,
    rule_files_default,
    variable_query_problems,
    variables_used,
)

EXPECTED_FILES = {"agent-run-cost.json", "budgets.json", "collector-health.json"}


@pytest.fixture(scope="module")
def declared() -> dict[str, frozenset[str]]:
    return declared_series(rule_files_default())


def test_committed_json_is_what_the_code_generates() -> None:
    assert set(build.DASHBOARDS) == EXPECTED_FILES
    assert build.stale_files() == [], "run: python -m grafana.dashboards.build"
    assert build.main(["--check"]) == 0


def test_check_reports_an_edited_or_missing_dashboard(tmp_path: Path) -> None:
    for name in EXPECTED_FILES:
        shutil.copy(DASHBOARD_DIR / name, tmp_path / name)
    assert build.stale_files(tmp_path) == []
    edited = tmp_path / "budgets.json"
    edited.write_text(edited.read_text().replace("Budget used", "Budget usage"))
    (tmp_path / "collector-health.json").unlink()
    assert sorted(build.stale_files(tmp_path)) == ["budgets.json", "collector-health.json"]


def test_generation_is_deterministic() -> None:
    assert build.render_all() == build.render_all()


def test_every_dashboard_queries_the_datasource_variable(dashboards: dict[str, dict]) -> None:
    assert set(dashboards) == EXPECTED_FILES
    for name, board in dashboards.items():
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource", name
        assert variables["datasource"]["query"] == "prometheus", name
        for panel in panels_with_queries(board):
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_run_cost_dashboard_has_feature_agent_model_variables(dashboards: dict[str, dict]) -> None:
    variables = {v["name"]: v for v in dashboards["agent-run-cost.json"]["templating"]["list"]}
    for name in ("feature", "agent", "model"):
        assert variables[name]["type"] == "query"
        assert variables[name]["query"].startswith("label_values(")
        assert variables[name]["multi"] and variables[name]["includeAll"]
        assert variables[name]["allValue"] == ".*"


def test_panels_have_unique_ids_titles_and_descriptions(dashboards: dict[str, dict]) -> None:
    uids = [board["uid"] for board in dashboards.values()]
    assert len(set(uids)) == len(uids)
    for name, board in dashboards.items():
        ids = [panel["id"] for panel in board["panels"]]
        assert len(set(ids)) == len(ids), name
        for panel in panels_with_queries(board):
            assert panel.get("description"), f"{name}: panel {panel['title']!r} has no description"


def test_every_panel_query_uses_only_declared_metrics_and_labels(
    dashboards: dict[str, dict], declared: dict[str, frozenset[str]]
) -> None:
    checked = 0
    for name, board in dashboards.items():
        for panel in panels_with_queries(board):
            for target in panel["targets"]:
                found = problems(grafana_to_promql(target["expr"]), declared)
                assert found == [], f"{name} / {panel['title']}: {found}"
                checked += 1
    assert checked >= 40


def test_every_variable_query_uses_declared_labels(
    dashboards: dict[str, dict], declared: dict[str, frozenset[str]]
) -> None:
    for name, board in dashboards.items():
        for variable in board["templating"]["list"]:
            if variable["type"] == "query":
                assert variable_query_problems(variable["query"], declared) == [], (name, variable["name"])


def test_every_variable_a_query_uses_is_defined(dashboards: dict[str, dict]) -> None:
    for name, board in dashboards.items():
        defined = {v["name"] for v in board["templating"]["list"]}
        for panel in panels_with_queries(board):
            for target in panel["targets"]:
                assert variables_used(target["expr"]) <= defined, (name, panel["title"])
        for variable in board["templating"]["list"]:
            assert variables_used(str(variable.get("query", ""))) <= defined, (name, variable["name"])


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ('sum(rate(cognocient_llm_cost_usd_totl{feature=~".*"}[5m]))', "metric cognocient_llm_cost_usd_totl"),
        ('sum(rate(cognocient_waste_flags_total{agent=~".*"}[5m]))', "label agent is not declared"),
        ("sum by (model) (rate(cognocient_run_cost_usd_count[5m]))", "label model is grouped"),
        ("sum(rate(cognocient_llm_calls_total[5m])", "not valid PromQL"),
        ('{job="x"}', "names no metric"),
    ],
)
def test_the_check_catches_undeclared_names(
    query: str, expected: str, declared: dict[str, frozenset[str]]
) -> None:
    assert any(expected in problem for problem in problems(query, declared)), problems(query, declared)


def test_variable_query_check_catches_an_undeclared_label(declared: dict[str, frozenset[str]]) -> None:
    assert variable_query_problems("label_values(cognocient_waste_flags_total, agent)", declared)
    assert variable_query_problems("label_values(agent)", declared)


def test_selected_variable_values_are_escaped_like_grafana_does(declared: dict[str, frozenset[str]]) -> None:
    expr = grafana_to_promql('cognocient_collector_queue_depth{instance=~"$instance"}',
                             {"instance": ["10.0.0.1:9464", "b"]})
    assert expr == 'cognocient_collector_queue_depth{instance=~"(10\\\\.0\\\\.0\\\\.1:9464|b)"}'
    assert problems(expr, declared) == []
    assert grafana_to_promql("rate(x[$__rate_interval]) offset $__range") == "rate(x[1m]) offset 1h"
