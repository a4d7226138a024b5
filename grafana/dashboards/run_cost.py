"""The "Agent run cost" dashboard: what runs cost, per feature, agent and model.

The heavy queries (spend rates and run-cost quantiles over every series) read the recording
rules of `grafana/prometheus/rules.yml` (names `level:metric:operation`); the rest query the
collector's metrics directly.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from grafana.dashboards.common import (
    EMPTY_WHEN_CLEAN,
    FEATURE_AGENT,
    FEATURE_AGENT_MODEL,
    GREEN,
    ORANGE,
    RED,
    PanelIds,
    Query,
    growth,
    label_variable,
    new_dashboard,
    row,
    stat_panel,
    table_panel,
    timeseries_panel,
)

UID = "cognocient-run-cost"

SPEND_RATE = "feature_agent_provider_model:cognocient_llm_cost_usd:rate5m"
RUN_COST_BUCKETS = "feature_agent:cognocient_run_cost_usd_bucket:rate5m"
RUN_STEPS_BUCKETS = "feature_agent:cognocient_run_steps_bucket:rate5m"
RUN_DURATION_BUCKETS = "feature_agent:cognocient_run_duration_seconds_bucket:rate5m"

UNPRICED_CALLS = 'cognocient_llm_unpriced_calls_total{model=~"$model"}'
# Waste flags carry feature and kind only: no agent or model to filter on.
WASTE_FLAGS = 'cognocient_waste_flags_total{feature=~"$feature"}'


def _quantiles(recorded_buckets: str, by: str) -> list[Query]:
    return [
        Query(
            f"histogram_quantile({q}, sum by (le, {by}) ({recorded_buckets}{{{FEATURE_AGENT}}}))",
            legend=f"p{round(q * 100)} {{{{{by}}}}}",
        )
        for q in (0.5, 0.95, 0.99)
    ]


def _ended(status: str) -> str:
    selector = f'cognocient_runs_ended_total{{{FEATURE_AGENT}, status="{status}"}}'
    return f"sum({growth(selector, '$__range')})"


def _spend_panels(ids: PanelIds) -> list:
    return [
        timeseries_panel(
            ids,
            title="Spend rate by feature",
            description="USD per hour spent on LLM calls, by feature (5-minute rate, recorded).",
            unit="currencyUSD",
            queries=[Query(f"sum by (feature) ({SPEND_RATE}{{{FEATURE_AGENT_MODEL}}}) * 3600",
                           legend="{{feature}}")],
        ),
        timeseries_panel(
            ids,
            title="Spend rate by model",
            description="USD per hour spent on LLM calls, by provider and answering model.",
            unit="currencyUSD",
            queries=[Query(f"sum by (provider, model) ({SPEND_RATE}{{{FEATURE_AGENT_MODEL}}}) * 3600",
                           legend="{{provider}} {{model}}")],
        ),
        stat_panel(
            ids,
            title="Spend in time range",
            description="USD spent on LLM calls in the dashboard's time range.",
            unit="currencyUSD",
            queries=[Query(
                f"sum({growth(f'cognocient_llm_cost_usd_total{{{FEATURE_AGENT_MODEL}}}', '$__range')})",
                instant=True)],
            width=6,
        ),
        stat_panel(
            ids,
            title="LLM calls in time range",
            description="LLM calls (inference spans) in the dashboard's time range.",
            unit="short",
            queries=[Query(
                f"sum({growth(f'cognocient_llm_calls_total{{{FEATURE_AGENT_MODEL}}}', '$__range')})",
                instant=True)],
            width=6,
        ),
        stat_panel(
            ids,
            title="Unpriced LLM calls in time range",
            description="Calls of models with no known price, costed at 0: add their price to the "
            "collector's price overrides. "
            f"{EMPTY_WHEN_CLEAN}: every model the demo uses has a price.",
            unit="short",
            queries=[Query(
                f"sum({growth(UNPRICED_CALLS, '$__range')})",
                instant=True)],
            width=6,
            thresholds=((None, GREEN), (1, ORANGE)),
        ),
        timeseries_panel(
            ids,
            title="Tokens by type",
            description="Tokens per second by type: input (includes cached), output (includes "
            "reasoning), cache_read, cache_creation, reasoning.",
            unit="short",
            queries=[Query(
                "sum by (type) "
                f"(rate(cognocient_llm_tokens_total{{{FEATURE_AGENT_MODEL}}}[$__rate_interval]))",
                legend="{{type}}")],
            width=6,
        ),
    ]


def _run_panels(ids: PanelIds) -> list:
    return [
        stat_panel(ids, title="Runs finished", unit="short", width=6,
                   description="Runs whose root span ended in the dashboard's time range.",
                   queries=[Query(_ended("finished"), instant=True)]),
        stat_panel(ids, title="Runs blocked", unit="short", width=6,
                   description="Runs stopped by a budget in the dashboard's time range.",
                   queries=[Query(_ended("blocked"), instant=True)],
                   thresholds=((None, GREEN), (1, RED))),
        stat_panel(ids, title="Runs active", unit="short", width=6,
                   description="Runs with a span within the idle timeout and no end yet. "
                   f"{EMPTY_WHEN_CLEAN}: the collector exposes no series while no run is active.",
                   queries=[Query(f"sum(cognocient_runs_active{{{FEATURE_AGENT}}})", instant=True)]),
        stat_panel(ids, title="Waste flags", unit="short", width=6,
                   description="Waste flags (context_bloat, loop, retry_storm) raised in the time range.",
                   queries=[Query(
                       f"sum({growth(WASTE_FLAGS, '$__range')})",
                       instant=True)],
                   thresholds=((None, GREEN), (1, ORANGE))),
        timeseries_panel(
            ids,
            title="Run cost p50 / p95 / p99 by feature",
            description="Quantiles of the total cost of finished runs (5-minute window, recorded).",
            unit="currencyUSD",
            queries=_quantiles(RUN_COST_BUCKETS, "feature"),
        ),
        timeseries_panel(
            ids,
            title="Runs ended by status",
            description="Runs ending per minute: finished (root span ended), blocked (by a budget), "
            "expired (no span for the idle timeout).",
            unit="short",
            queries=[Query(
                "sum by (status) "
                f"(rate(cognocient_runs_ended_total{{{FEATURE_AGENT}}}[$__rate_interval])) * 60",
                legend="{{status}}")],
            bars=True,
            stacked=True,
        ),
        table_panel(
            ids,
            title="Most expensive runs right now",
            description="The costliest active or recently ended runs (the collector keeps the "
            "top runs only, capped by prometheus.max_run_series).",
            unit="currencyUSD",
            queries=[Query(f"topk(20, cognocient_run_live_cost_usd{{{FEATURE_AGENT}}})",
                           instant=True, table=True)],
            columns={"run_id": "Run id", "feature": "Feature", "agent": "Agent",
                     "status": "Status", "Value": "Cost (USD)"},
        ),
        timeseries_panel(
            ids,
            title="Steps per run",
            description="Quantiles of the number of LLM calls of finished runs.",
            unit="short",
            queries=_quantiles(RUN_STEPS_BUCKETS, "feature"),
        ),
        timeseries_panel(
            ids,
            title="Run duration",
            description="Quantiles of the time from the first to the last LLM call of finished runs.",
            unit="s",
            queries=_quantiles(RUN_DURATION_BUCKETS, "feature"),
        ),
        timeseries_panel(
            ids,
            title="Waste flags by kind",
            description="Waste flags raised per time step, by kind and feature.",
            unit="short",
            queries=[Query(
                "sum by (kind, feature) "
                f"({growth(WASTE_FLAGS, '$__interval')})",
                legend="{{kind}} {{feature}}")],
            width=24,
            bars=True,
        ),
    ]


def build() -> dashboard.Dashboard:
    ids = PanelIds()
    board = (
        new_dashboard(uid=UID, title="Cognocient: agent run cost",
                      description="What agent runs cost, per feature, agent and model.")
        .with_variable(label_variable("feature", "Feature", "cognocient_llm_calls_total"))
        .with_variable(label_variable(
            "agent", "Agent", 'cognocient_llm_calls_total{feature=~"$feature"}'))
        .with_variable(label_variable(
            "model", "Model", 'cognocient_llm_calls_total{feature=~"$feature", agent=~"$agent"}'))
    )
    board = board.with_row(row(ids, "Spend"))
    for panel in _spend_panels(ids):
        board = board.with_panel(panel)
    board = board.with_row(row(ids, "Runs"))
    for panel in _run_panels(ids):
        board = board.with_panel(panel)
    return board
