"""The "Budgets" dashboard: each budget's spend against its limit, and what budgets blocked."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from grafana.dashboards.common import (
    EMPTY_WHEN_CLEAN,
    FEATURE_AGENT,
    GREEN,
    ORANGE,
    RED,
    PanelIds,
    Query,
    bargauge_panel,
    growth,
    label_variable,
    new_dashboard,
    row,
    table_panel,
    timeseries_panel,
)

UID = "cognocient-budgets"
BUDGET = 'budget=~"$budget"'
BLOCKED_RUNS = f"cognocient_budget_blocked_runs_total{{{BUDGET}, {FEATURE_AGENT}}}"


def _usage_panels(ids: PanelIds) -> list:
    return [
        bargauge_panel(
            ids,
            title="Budget used",
            description="Spend counted against each budget in its current window, as a percentage "
            "of the window's limit. Alerts fire at 80% and 100% of monthly budgets.",
            unit="percent",
            queries=[Query(
                f"100 * cognocient_budget_spend_usd{{{BUDGET}}}"
                f" / (cognocient_budget_limit_usd{{{BUDGET}}} > 0)",
                legend="{{budget}} ({{window}})",
                instant=True)],
            max_value=100,
            thresholds=((None, GREEN), (80, ORANGE), (100, RED)),
        ),
        table_panel(
            ids,
            title="Spend and limit per window",
            description="Spend counted in the current window (calendar day or month, UTC) and the "
            "window's limit, USD.",
            unit="currencyUSD",
            queries=[
                Query(f"cognocient_budget_spend_usd{{{BUDGET}}}", instant=True, table=True),
                Query(f"cognocient_budget_limit_usd{{{BUDGET}}}", instant=True, table=True),
            ],
            columns={"budget": "Budget", "scope": "Scope", "window": "Window",
                     "Value #A": "Spend (USD)", "Value #B": "Limit (USD)"},
            width=12,
        ),
        timeseries_panel(
            ids,
            title="Spend against limit",
            description="Spend of each budget in its current window (solid) and its limit.",
            unit="currencyUSD",
            queries=[
                Query(f"cognocient_budget_spend_usd{{{BUDGET}}}", legend="{{budget}} {{window}} spend"),
                Query(f"cognocient_budget_limit_usd{{{BUDGET}}}", legend="{{budget}} {{window}} limit"),
            ],
        ),
        table_panel(
            ids,
            title="Per-run limits",
            description="Budgets that cap the cost of each single run, USD.",
            unit="currencyUSD",
            queries=[Query(f"cognocient_budget_per_run_limit_usd{{{BUDGET}}}", instant=True, table=True)],
            columns={"budget": "Budget", "scope": "Scope", "Value": "Per-run limit (USD)"},
            width=12,
        ),
    ]


def _blocking_panels(ids: PanelIds) -> list:
    return [
        timeseries_panel(
            ids,
            title="Budget decisions",
            description="Budget checks per minute by decision (allow, warn, block), by deciding budget.",
            unit="short",
            queries=[Query(
                f"sum by (budget, decision) (rate(cognocient_budget_decisions_total{{{BUDGET}}}"
                "[$__rate_interval])) * 60",
                legend="{{budget}} {{decision}}")],
            stacked=True,
        ),
        timeseries_panel(
            ids,
            title="Blocked calls",
            description="LLM calls refused by a budget per time step, by budget.",
            unit="short",
            queries=[Query(
                "sum by (budget) "
                f"({growth(f'cognocient_budget_blocked_calls_total{{{BUDGET}}}', '$__interval')})",
                legend="{{budget}}")],
            bars=True,
        ),
        table_panel(
            ids,
            title="Runs blocked in time range",
            description="Runs marked blocked by a budget in the dashboard's time range.",
            unit="short",
            queries=[Query(
                "sum by (budget, feature, agent) "
                f"({growth(BLOCKED_RUNS, '$__range')})"
                " > 0",
                instant=True, table=True)],
            columns={"budget": "Budget", "feature": "Feature", "agent": "Agent", "Value": "Runs blocked"},
            width=12,
        ),
        table_panel(
            ids,
            title="Blocked runs",
            description="Run ids of recently blocked runs among the runs the collector exposes "
            f"(the costliest ones). {EMPTY_WHEN_CLEAN} when no run was blocked lately.",
            unit="currencyUSD",
            queries=[Query(f'cognocient_run_live_cost_usd{{{FEATURE_AGENT}, status="blocked"}}',
                           instant=True, table=True)],
            columns={"run_id": "Run id", "feature": "Feature", "agent": "Agent",
                     "Value": "Cost when blocked (USD)"},
            width=12,
        ),
    ]


def build() -> dashboard.Dashboard:
    ids = PanelIds()
    board = (
        new_dashboard(uid=UID, title="Cognocient: budgets",
                      description="Spend against each budget's limits, and what the budgets blocked.")
        # Budgets with only a per-run limit have no window limit series.
        .with_variable(label_variable(
            "budget", "Budget",
            '{__name__=~"cognocient_budget_limit_usd|cognocient_budget_per_run_limit_usd"}'))
        .with_variable(label_variable("feature", "Feature", "cognocient_llm_calls_total"))
        .with_variable(label_variable("agent", "Agent", 'cognocient_llm_calls_total{feature=~"$feature"}'))
    )
    board = board.with_row(row(ids, "Spend against limits"))
    for panel in _usage_panels(ids):
        board = board.with_panel(panel)
    board = board.with_row(row(ids, "Blocking"))
    for panel in _blocking_panels(ids):
        board = board.with_panel(panel)
    return board
