"""Prometheus `/metrics`: a custom collector building every family at scrape time.

Like client_python's `gc_collector`: nothing is a live metric object; `collect()` reads the
collector's counters (`collector/stats.py`) and the in-memory rollup state and yields families
named, typed and labelled exactly as `collector/metric_catalog.py` declares them. The registry is
passed in (`Collector.registry`), never the global one; other parts add their own collectors to
it (`Collector.add_metrics_collector`).

The per-run gauge `cognocient_run_live_cost_usd` holds at most `max_run_series` series: the most
expensive runs among those active or ended within `runs.keep_ended_seconds`; cheaper runs drop
out, so a million run ids cannot blow up a scrape.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector as PrometheusCollector

from collector import metric_catalog as catalog
from collector.metric_catalog import MetricSpec
from collector.rollup import ACTIVE, RunState
from collector.stats import UNKNOWN, CollectorStats
from collector.telemetry import CounterVec, HistogramVec


def family(spec: MetricSpec) -> Metric:
    """An empty family for `spec` (name, type, help, labels from the catalog)."""
    if spec.type == "counter":
        return CounterMetricFamily(spec.name, spec.help, labels=spec.labels)
    if spec.type == "gauge":
        return GaugeMetricFamily(spec.name, spec.help, labels=spec.labels)
    return HistogramMetricFamily(spec.name, spec.help, labels=spec.labels)


def counter_family(spec: MetricSpec, values: CounterVec) -> Metric:
    metric = family(spec)
    for labels, value in values.items():
        metric.add_metric(list(labels), value, created=values.created)
    return metric


def histogram_family(spec: MetricSpec, values: HistogramVec) -> Metric:
    metric = family(spec)
    for labels, buckets, total in values.snapshot():
        metric.add_metric(list(labels), buckets, total)
    return metric


class CollectorMetrics(PrometheusCollector):
    def __init__(
        self,
        *,
        stats: CollectorStats,
        state: RunState,
        max_run_series: int,
        queue_depth: Callable[[], int],
        version: str,
    ) -> None:
        self.stats = stats
        self.state = state
        self.max_run_series = max_run_series
        self.queue_depth = queue_depth
        self.version = version

    def describe(self) -> Iterator[Metric]:
        # Declared families, without reading any state (the registry calls this on register).
        for spec in _OWN:
            yield family(spec)

    def collect(self) -> Iterator[Metric]:
        stats = self.stats
        yield counter_family(catalog.LLM_COST, stats.llm_cost)
        yield counter_family(catalog.LLM_CALLS, stats.llm_calls)
        yield counter_family(catalog.LLM_TOKENS, stats.llm_tokens)
        yield counter_family(catalog.LLM_UNPRICED_CALLS, stats.llm_unpriced_calls)
        yield histogram_family(catalog.RUN_COST, stats.run_cost)
        yield histogram_family(catalog.RUN_STEPS, stats.run_steps)
        yield histogram_family(catalog.RUN_DURATION, stats.run_duration)
        yield counter_family(catalog.RUNS_ENDED, stats.runs_ended)
        yield from self._run_families()
        yield counter_family(catalog.SPANS_RECEIVED, stats.spans_received)
        yield counter_family(catalog.SPANS_ACCEPTED, stats.spans_accepted)
        yield counter_family(catalog.SPANS_REJECTED, stats.spans_rejected)
        yield counter_family(catalog.SPANS_DUPLICATE, stats.spans_duplicate)
        yield counter_family(catalog.REQUESTS, stats.requests)
        yield histogram_family(catalog.PROCESSING_SECONDS, stats.stages.seconds)
        yield counter_family(catalog.STAGE_SPANS, stats.stages.spans)
        yield histogram_family(catalog.STORE_COMMIT_SECONDS, stats.store_commit)
        depth = family(catalog.QUEUE_DEPTH)
        depth.add_metric([], self.queue_depth())
        yield depth
        build = family(catalog.BUILD_INFO)
        build.add_metric([self.version], 1)
        yield build

    def _run_families(self) -> Iterator[Metric]:
        runs = self.state.snapshot()
        active: Counter[tuple[str, str]] = Counter()
        for run in runs:
            if run.status == ACTIVE:
                active[(run.feature or UNKNOWN, run.agent or UNKNOWN)] += 1
        active_family = family(catalog.RUNS_ACTIVE)
        for labels, count in active.items():
            active_family.add_metric(list(labels), count)
        yield active_family
        top = heapq.nlargest(self.max_run_series, runs, key=lambda run: run.cost_usd)
        live = family(catalog.RUN_LIVE_COST)
        for run in top:
            run_label = run.run_id if run.tenant == "default" else f"{run.tenant}/{run.run_id}"
            live.add_metric([run_label, run.feature or UNKNOWN, run.agent or UNKNOWN, run.status],
                            float(run.cost_usd))
        yield live
        series = family(catalog.RUN_SERIES)
        series.add_metric([], len(top))
        yield series
        limit = family(catalog.RUN_SERIES_LIMIT)
        limit.add_metric([], self.max_run_series)
        yield limit


_OWN = (
    catalog.LLM_COST, catalog.LLM_CALLS, catalog.LLM_TOKENS, catalog.LLM_UNPRICED_CALLS, catalog.RUN_COST,
    catalog.RUN_STEPS, catalog.RUN_DURATION, catalog.RUNS_ENDED, catalog.RUNS_ACTIVE, catalog.RUN_LIVE_COST,
    catalog.RUN_SERIES, catalog.RUN_SERIES_LIMIT, catalog.SPANS_RECEIVED, catalog.SPANS_ACCEPTED,
    catalog.SPANS_REJECTED, catalog.SPANS_DUPLICATE, catalog.REQUESTS, catalog.PROCESSING_SECONDS,
    catalog.STAGE_SPANS, catalog.STORE_COMMIT_SECONDS, catalog.QUEUE_DEPTH, catalog.BUILD_INFO,
)
