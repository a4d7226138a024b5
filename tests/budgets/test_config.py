from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from collector.budgets.config import BudgetConfigError, parse_budgets

TESTDATA = Path(__file__).parent.parent / "testdata" / "budgets"


def load(name: str):
    return parse_budgets(yaml.safe_load((TESTDATA / name).read_text())["budgets"])


def test_valid_file_parses_with_decimal_limits_and_defaults():
    company, per_run, watch = load("valid.yaml")
    assert company.scope == "global" and company.scope_value is None
    assert company.monthly_limit_usd == Decimal("5000") and company.enforcement == "block"
    assert per_run.per_run_limit_usd == Decimal("0.50")  # exact: no binary float on the way
    assert per_run.window_limits() == {"daily": Decimal(20), "monthly": Decimal(200)}
    assert watch.enforcement == "warn" and watch.on_loop == "block" and watch.reservation_ttl_seconds == 30
    assert per_run.applies_to(tenant="", feature="document-processor", agent="x")
    assert not per_run.applies_to(tenant="", feature="search", agent="x")
    assert company.applies_to(tenant="acme", feature="search", agent="x")
    assert watch.applies_to(tenant="", feature="search", agent="researcher")


def test_zero_limit_names_the_budget_and_the_field():
    with pytest.raises(BudgetConfigError) as error:
        load("zero_per_run.yaml")
    assert str(error.value) == "budgets[0] (document-processor per run): per_run_limit_usd: must be > 0"


def test_every_fault_is_reported_with_its_budget():
    with pytest.raises(BudgetConfigError) as error:
        load("many_faults.yaml")
    lines = str(error.value).splitlines()
    assert lines[0] == (
        "budgets[0] (no limits): set at least one of monthly_limit_usd, daily_limit_usd, per_run_limit_usd"
    )
    assert (
        lines[1]
        == "budgets[1] (tenant without value): scope_value: required for scope tenant (which tenant?)"
    )
    assert lines[2].startswith("budgets[2] (global with value): scope_value: must be empty for scope global")
    assert lines[3] == "budgets[3] (typo): montly_limit_usd: unknown field (check its spelling)"
    assert any(line.startswith("budgets[4] (bad enforcement): scope: ") for line in lines)
    assert any(line.startswith("budgets[4] (bad enforcement): enforcement: ") for line in lines)
    assert "budgets[6] (company): name: duplicate of budgets[5]; names must be unique" in lines
    assert lines[-1] == "budgets[7]: must be a mapping with name, scope and limits"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"name": "x"}, "budgets: must be a list of budgets, got dict"),
        (
            [{"name": "n", "scope": "global", "daily_limit_usd": "lots"}],
            "budgets[0] (n): daily_limit_usd: Input should be a valid decimal",
        ),
        (
            [{"name": "n", "scope": "global", "daily_limit_usd": float("inf")}],
            "budgets[0] (n): daily_limit_usd: Input should be a finite number",
        ),
        (
            [{"name": "n", "scope": "global", "daily_limit_usd": 1, "reservation_ttl_seconds": 0}],
            "budgets[0] (n): reservation_ttl_seconds: Input should be greater than 0",
        ),
    ],
)
def test_bad_values_get_clear_messages(raw, message):
    with pytest.raises(BudgetConfigError) as error:
        parse_budgets(raw)
    assert str(error.value) == message


def test_no_section_means_no_budgets():
    assert parse_budgets(None) == ()


def test_the_collector_config_reports_the_budget_at_fault():
    from collector.config import ConfigError, parse_config

    raw = yaml.safe_load((TESTDATA / "valid.yaml").read_text())
    assert [budget.name for budget in parse_config(raw).budgets] == [
        "company",
        "document-processor per run",
        "researcher watch",
    ]
    with pytest.raises(ConfigError) as error:
        parse_config(yaml.safe_load((TESTDATA / "zero_per_run.yaml").read_text()), source="collector.yaml")
    assert str(error.value) == (
        "invalid configuration in collector.yaml: budgets: budgets[0] "
        "(document-processor per run): per_run_limit_usd: must be > 0"
    )
