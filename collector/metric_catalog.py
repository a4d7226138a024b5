"""Every Prometheus metric the collector exposes, declared once.

The `/metrics` collector builds its families from these declarations; the Grafana dashboards
and the Prometheus rules are checked against them (tests/grafana), so a metric or label that
is not declared here cannot be queried by a panel or an alert.

Names follow Prometheus conventions: the unit is in the name, counters are declared without
their `_total` suffix (prometheus-client adds it on exposition), histograms expose
`_bucket`/`_sum`/`_count`.

Label cardinality: `run_id` appears on `cognocient_run_cost_usd` only, and that family is
capped at `prometheus.max_run_series` series. Every other label takes a bounded set of values
(features, agents, models, budgets are configuration or code, not per-request data).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MetricType = Literal["counter", "gauge", "histogram"]

# Buckets for per-run histograms: agent runs cost cents to dollars, take 1 to hundreds of
# steps, and last seconds to an hour.
RUN_COST_BUCKETS_USD = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50)
RUN_STEPS_BUCKETS = (1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233)
RUN_DURATION_BUCKETS_SECONDS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
LATENCY_BUCKETS_SECONDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)


@dataclass(frozen=True)
class MetricSpec:
    name: str
    type: MetricType
    unit: str
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()

    def sample_names(self) -> tuple[str, ...]:
        """The series names this metric appears under in an exposition."""
        if self.type == "counter":
            return (f"{self.name}_total", f"{self.name}_created")
        if self.type == "histogram":
            return tuple(f"{self.name}{suffix}" for suffix in ("_bucket", "_sum", "_count", "_created"))
        return (self.name,)


_LLM = ("feature", "agent", "provider", "model")
_RUN = ("feature", "agent")

LLM_COST = MetricSpec(
    "cognocient_llm_cost_usd", "counter", "usd",
    "Cost of LLM calls, USD, by feature, agent, provider and answering model.", _LLM)
LLM_CALLS = MetricSpec(
    "cognocient_llm_calls", "counter", "",
    "LLM calls (inference spans) by feature, agent, provider and answering model.", _LLM)
LLM_TOKENS = MetricSpec(
    "cognocient_llm_tokens", "counter", "",
    "Tokens of LLM calls by type: input (includes cached), output (includes reasoning), "
    "cache_read, cache_creation, reasoning.", (*_LLM, "type"))
LLM_UNPRICED_CALLS = MetricSpec(
    "cognocient_llm_unpriced_calls", "counter", "",
    "LLM calls whose model has no known price: costed at 0 (cognocient.cost.source=unknown_model).",
    ("provider", "model"))

RUN_COST = MetricSpec(
    "cognocient_run_cost_usd", "histogram", "usd",
    "Total cost of each finished run, USD.", _RUN, RUN_COST_BUCKETS_USD)
RUN_STEPS = MetricSpec(
    "cognocient_run_steps", "histogram", "",
    "LLM calls of each finished run.", _RUN, RUN_STEPS_BUCKETS)
RUN_DURATION = MetricSpec(
    "cognocient_run_duration_seconds", "histogram", "seconds",
    "Time from the first to the last LLM call of each finished run.", _RUN, RUN_DURATION_BUCKETS_SECONDS)
RUNS_ENDED = MetricSpec(
    "cognocient_runs_ended", "counter", "",
    "Runs that ended, by how: finished (root span ended), blocked (by a budget), expired (idle).",
    (*_RUN, "status"))
RUNS_ACTIVE = MetricSpec(
    "cognocient_runs_active", "gauge", "",
    "Runs with a span in the idle timeout and no end yet.", _RUN)
RUN_LIVE_COST = MetricSpec(
    "cognocient_run_live_cost_usd", "gauge", "usd",
    "Cost so far of the most expensive active or recently ended runs, USD; capped at "
    "prometheus.max_run_series series, the cheaper runs drop out.",
    ("run_id", *_RUN, "status"))
RUN_SERIES = MetricSpec(
    "cognocient_run_series", "gauge", "",
    "Series of cognocient_run_live_cost_usd in this scrape.")
RUN_SERIES_LIMIT = MetricSpec(
    "cognocient_run_series_limit", "gauge", "",
    "The cap on cognocient_run_live_cost_usd series (prometheus.max_run_series).")

WASTE_FLAGS = MetricSpec(
    "cognocient_waste_flags", "counter", "",
    "Waste flags raised on runs: context_bloat, loop, retry_storm.", ("feature", "kind"))

BUDGET_LIMIT = MetricSpec(
    "cognocient_budget_limit_usd", "gauge", "usd",
    "Limit of each budget per window (daily, monthly), USD.", ("budget", "scope", "window"))
BUDGET_SPEND = MetricSpec(
    "cognocient_budget_spend_usd", "gauge", "usd",
    "Spend counted against each budget in its current window (daily, monthly), USD.",
    ("budget", "scope", "window"))
BUDGET_PER_RUN_LIMIT = MetricSpec(
    "cognocient_budget_per_run_limit_usd", "gauge", "usd",
    "Per-run limit of each budget that has one, USD.", ("budget", "scope"))
BUDGET_DECISIONS = MetricSpec(
    "cognocient_budget_decisions", "counter", "",
    "Budget checks by deciding budget and decision (allow, warn, block).", ("budget", "decision"))
BUDGET_BLOCKED_CALLS = MetricSpec(
    "cognocient_budget_blocked_calls", "counter", "",
    "LLM calls refused by a budget, by budget.", ("budget",))
BUDGET_BLOCKED_RUNS = MetricSpec(
    "cognocient_budget_blocked_runs", "counter", "",
    "Runs marked blocked by a budget (a run counts once).", ("budget", "feature", "agent"))

SPANS_RECEIVED = MetricSpec(
    "cognocient_collector_spans_received", "counter", "",
    "Spans received by the OTLP receivers.", ("transport",))
SPANS_ACCEPTED = MetricSpec(
    "cognocient_collector_spans_accepted", "counter", "",
    "Spans accepted and committed to the store.", ("transport",))
SPANS_REJECTED = MetricSpec(
    "cognocient_collector_spans_rejected", "counter", "",
    "Spans refused (malformed, unusable, overload), by reason.", ("transport", "reason"))
SPANS_DUPLICATE = MetricSpec(
    "cognocient_collector_spans_duplicate", "counter", "",
    "Spans delivered again (same trace id and span id) and not counted twice.", ("transport",))
REQUESTS = MetricSpec(
    "cognocient_collector_requests", "counter", "",
    "Requests to the collector by transport (grpc, http) and status (the gRPC code or HTTP status).",
    ("transport", "status"))
PROCESSING_SECONDS = MetricSpec(
    "cognocient_collector_processing_seconds", "histogram", "seconds",
    "Time to process one export batch through the pipeline, by stage.", ("stage",),
    LATENCY_BUCKETS_SECONDS)
STORE_COMMIT_SECONDS = MetricSpec(
    "cognocient_collector_store_commit_seconds", "histogram", "seconds",
    "Time to commit one batch to the store.", (), LATENCY_BUCKETS_SECONDS)
STAGE_SPANS = MetricSpec(
    "cognocient_collector_stage_spans", "counter", "",
    "Spans into (direction=in) and out of (direction=out) each pipeline stage; the dedup stage's "
    "difference is the duplicates.", ("stage", "direction"))
QUEUE_DEPTH = MetricSpec(
    "cognocient_collector_queue_depth", "gauge", "",
    "Export batches waiting to be processed.")
BUILD_INFO = MetricSpec(
    "cognocient_collector_build_info", "gauge", "",
    "Always 1; the collector's version in a label.", ("version",))

CATALOG: tuple[MetricSpec, ...] = tuple(
    value for value in list(globals().values()) if isinstance(value, MetricSpec)
)
BY_NAME: dict[str, MetricSpec] = {spec.name: spec for spec in CATALOG}


def exposed_series_names() -> dict[str, MetricSpec]:
    """Every series name that may appear in an exposition, mapped to its declaration."""
    return {sample: spec for spec in CATALOG for sample in spec.sample_names()}
