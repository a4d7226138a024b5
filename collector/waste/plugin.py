"""Installs waste detection into the collector (collector/plugins.py): the pipeline stage (order
100, after rollup and before budgets) and `cognocient_waste_flags_total{feature, kind}` on /metrics.

Reads `collector.config.waste` (the `waste:` section, `collector/waste/config.py`) and, for
`on_loop: block`, the budgets of `collector.config.budgets`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import Metric
from prometheus_client.registry import Collector as PrometheusCollector

from collector import metric_catalog as catalog
from collector.telemetry import CounterVec
from collector.waste.config import WasteConfig

if TYPE_CHECKING:
    from collector.app import Collector
    from collector.pipeline import Stage

__all__ = ["STAGE_ORDER", "WasteMetrics", "install"]

STAGE_ORDER = 100


def install(collector: Collector) -> None:
    config = collector.config.waste
    if not isinstance(config, WasteConfig):  # a section handed in as a plain mapping
        from collector.waste.config import load_waste_config

        config = load_waste_config(config)
    flags_raised = CounterVec()
    collector.add_metrics_collector(WasteMetrics(flags_raised))
    if not config.any_enabled:
        return

    def stage(next: Stage) -> Stage:
        from collector.waste.loop_block import loop_blockers_from
        from collector.waste.stage import WasteStage

        return WasteStage(
            next, config=config, price_book=collector.price_book,
            loop_blockers=loop_blockers_from(collector.config.budgets),
            retention_seconds=collector.config.runs.retention_days * 86_400,
            flags_raised=flags_raised,
        )

    collector.add_stage(stage, order=STAGE_ORDER)


class WasteMetrics(PrometheusCollector):
    """`cognocient_waste_flags_total{feature, kind}`: flags raised since the collector started."""

    def __init__(self, flags_raised: CounterVec) -> None:
        self.flags_raised = flags_raised

    def describe(self) -> Iterator[Metric]:
        from collector.metrics import family

        yield family(catalog.WASTE_FLAGS)

    def collect(self) -> Iterator[Metric]:
        from collector.metrics import counter_family

        yield counter_family(catalog.WASTE_FLAGS, self.flags_raised)
