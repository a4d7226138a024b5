"""The budget metrics of /metrics, built at scrape time (a prometheus-client custom collector).

Families and labels are the declarations of `collector/metric_catalog.py`. Register it on the
registry the collector passes in: `registry.register(BudgetMetricsCollector(ledger, counters))`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from collector import metric_catalog as catalog

from .ledger import Ledger
from .service import BudgetCounters

__all__ = ["BudgetMetricsCollector", "describe_families"]

logger = logging.getLogger(__name__)


def _gauge(spec: catalog.MetricSpec) -> GaugeMetricFamily:
    return GaugeMetricFamily(spec.name, spec.help, labels=list(spec.labels), unit="")


def _counter(spec: catalog.MetricSpec) -> CounterMetricFamily:
    return CounterMetricFamily(spec.name, spec.help, labels=list(spec.labels))


def describe_families() -> list[Metric]:
    return [
        _gauge(catalog.BUDGET_LIMIT),
        _gauge(catalog.BUDGET_SPEND),
        _gauge(catalog.BUDGET_PER_RUN_LIMIT),
        _counter(catalog.BUDGET_DECISIONS),
        _counter(catalog.BUDGET_BLOCKED_CALLS),
        _counter(catalog.BUDGET_BLOCKED_RUNS),
    ]


class BudgetMetricsCollector:
    def __init__(self, ledger: Ledger, counters: BudgetCounters) -> None:
        self.ledger = ledger
        self.counters = counters

    def describe(self) -> list[Metric]:
        # Without describe() the registry would call collect() at registration, touching the store.
        return describe_families()

    def collect(self) -> Iterator[Metric]:
        limit, spend, per_run = (
            _gauge(catalog.BUDGET_LIMIT),
            _gauge(catalog.BUDGET_SPEND),
            _gauge(catalog.BUDGET_PER_RUN_LIMIT),
        )
        try:
            windows = self.ledger.window_spend()
        except Exception:  # a scrape must not fail because the store is busy or Redis is down
            logger.exception("budget metrics: cannot read the ledger")
            windows = []
        for budget, window, limit_usd, spent in windows:
            labels = [budget.name, budget.scope, window]
            limit.add_metric(labels, float(limit_usd))
            spend.add_metric(labels, float(spent))
        for budget in self.ledger.budgets:
            if budget.per_run_limit_usd is not None:
                per_run.add_metric([budget.name, budget.scope], float(budget.per_run_limit_usd))
        yield from (limit, spend, per_run)
        for spec, values in (
            (catalog.BUDGET_DECISIONS, self.counters.decisions),
            (catalog.BUDGET_BLOCKED_CALLS, self.counters.blocked_calls),
            (catalog.BUDGET_BLOCKED_RUNS, self.counters.blocked_runs),
        ):
            family = _counter(spec)
            for labels, value in values.items():
                family.add_metric(list(labels), value, created=values.created)
            yield family
