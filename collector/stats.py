"""The collector's counters and histograms (values only; `collector/metrics.py` exposes them).

Counters count from process start: Prometheus treats the drop at a restart as a counter reset.
"""

from __future__ import annotations

from collector import metric_catalog as catalog
from collector.pipeline import StageMetrics
from collector.rollup import RunRollup
from collector.telemetry import CounterVec, HistogramVec

UNKNOWN = "unknown"


class CollectorStats:
    def __init__(self) -> None:
        # (feature, agent, provider, model)
        self.llm_cost = CounterVec()
        self.llm_calls = CounterVec()
        # (feature, agent, provider, model, type)
        self.llm_tokens = CounterVec()
        # (provider, model)
        self.llm_unpriced_calls = CounterVec()
        # (feature, agent)
        self.run_cost = HistogramVec(catalog.RUN_COST.buckets)
        self.run_steps = HistogramVec(catalog.RUN_STEPS.buckets)
        self.run_duration = HistogramVec(catalog.RUN_DURATION.buckets)
        # (feature, agent, status)
        self.runs_ended = CounterVec()
        # (transport,) / (transport, reason) / (transport, status)
        self.spans_received = CounterVec()
        self.spans_accepted = CounterVec()
        self.spans_rejected = CounterVec()
        self.spans_duplicate = CounterVec()
        self.requests = CounterVec()
        self.store_commit = HistogramVec(catalog.STORE_COMMIT_SECONDS.buckets)
        self.stages = StageMetrics(catalog.PROCESSING_SECONDS.buckets)

    def observe_ended(self, runs: list[RunRollup]) -> None:
        """Per-run histograms, once per run, when it leaves `active`."""
        for run in runs:
            labels = (run.feature or UNKNOWN, run.agent or UNKNOWN)
            self.run_cost.observe(labels, float(run.cost_usd))
            self.run_steps.observe(labels, run.steps)
            self.run_duration.observe(labels, run.duration_seconds)
            self.runs_ended.inc((*labels, run.status))
