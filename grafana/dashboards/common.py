"""Shared pieces of the dashboards: datasource, template variables, panel builders.

Every panel goes through one of the builders here so that all panels query the `${datasource}`
variable, carry a description, and get a stable id (ids are assigned in order of creation by a
`PanelIds` counter, so regenerating a dashboard gives byte-identical JSON).

A panel whose query has no data on a freshly started stack says so in its description with the
sentence `EMPTY_WHEN_CLEAN`; the end-to-end test accepts no data only from those panels.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from grafana_foundation_sdk.builders import bargauge, dashboard, prometheus, stat, table, timeseries
from grafana_foundation_sdk.builders.common import ReduceDataOptions, StackingConfig, VizLegendOptions
from grafana_foundation_sdk.models.common import (
    BarGaugeDisplayMode,
    BigValueColorMode,
    BigValueGraphMode,
    GraphDrawStyle,
    LegendDisplayMode,
    LegendPlacement,
    StackingMode,
)
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    DataTransformerConfig,
    Threshold,
    ThresholdsMode,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
EMPTY_WHEN_CLEAN = "Empty in a clean state"

# Filters shared by the per-run and per-call panels; `=~` because the variables are multi-value
# with "All" meaning `.*` (Grafana expands a multi-value selection to `(a|b)`).
FEATURE_AGENT = 'feature=~"$feature", agent=~"$agent"'
FEATURE_AGENT_MODEL = 'feature=~"$feature", agent=~"$agent", model=~"$model"'

GREEN, ORANGE, RED = "green", "orange", "red"


@dataclass(frozen=True)
class Query:
    """One PromQL target of a panel. `instant` queries feed stats and tables."""

    expr: str
    legend: str = ""
    instant: bool = False
    table: bool = False


class PanelIds:
    """Hands out panel ids 1, 2, 3... in the order panels are built."""

    def __init__(self) -> None:
        self._ids: Iterator[int] = itertools.count(1)

    def next(self) -> int:
        return next(self._ids)


def growth(selector: str, window: str) -> str:
    """PromQL for how much a counter grew within `window`, per series, counting series born in it.

    `increase()` needs two samples, so the first value of a series that appears inside the
    window (the first blocked run of a budget, the first loop flag of a feature) is lost. Here
    a series with no sample `window` ago counts from zero. Counter resets give no negative growth.
    """
    return f"clamp_min({selector} - ({selector} offset {window} or {selector} * 0), 0)"


def datasource_variable() -> dashboard.DatasourceVariable:
    return dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")


def label_variable(name: str, label: str, series: str) -> dashboard.QueryVariable:
    """A multi-value variable over the values of `name` in `series`, "All" meaning `.*`."""
    return (
        dashboard.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(f"label_values({series}, {name})")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
    )


def _target(query: Query, ref_id: str) -> prometheus.Dataquery:
    target = prometheus.Dataquery().expr(query.expr).ref_id(ref_id).datasource(DATASOURCE)
    if query.legend:
        target = target.legend_format(query.legend)
    target = target.instant() if query.instant else target.range()
    if query.table:
        target = target.format(PromQueryFormat.TABLE)
    return target


def _with_targets(panel, queries: Sequence[Query]):
    for index, query in enumerate(queries):
        panel = panel.with_target(_target(query, chr(ord("A") + index)))
    return panel


def _thresholds(steps: Sequence[tuple[float | None, str]]) -> dashboard.ThresholdsConfig:
    return (
        dashboard.ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=value, color=color) for value, color in steps])
    )


def timeseries_panel(
    ids: PanelIds,
    *,
    title: str,
    description: str,
    unit: str,
    queries: Sequence[Query],
    width: int = 12,
    height: int = 8,
    bars: bool = False,
    stacked: bool = False,
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .id(ids.next())
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(height)
        .legend(
            VizLegendOptions()
            .display_mode(LegendDisplayMode.TABLE)
            .placement(LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["lastNotNull", "max"])
        )
    )
    panel = panel.draw_style(GraphDrawStyle.BARS).fill_opacity(60) if bars else panel.fill_opacity(10)
    if stacked:
        panel = panel.stacking(StackingConfig().mode(StackingMode.NORMAL))
    return _with_targets(panel, queries)


def stat_panel(
    ids: PanelIds,
    *,
    title: str,
    description: str,
    unit: str,
    queries: Sequence[Query],
    width: int = 4,
    height: int = 4,
    thresholds: Sequence[tuple[float | None, str]] = ((None, GREEN),),
) -> stat.Panel:
    panel = (
        stat.Panel()
        .id(ids.next())
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(height)
        .graph_mode(BigValueGraphMode.NONE)
        .color_mode(BigValueColorMode.VALUE)
        .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]))
        .thresholds(_thresholds(thresholds))
    )
    return _with_targets(panel, queries)


def bargauge_panel(
    ids: PanelIds,
    *,
    title: str,
    description: str,
    unit: str,
    queries: Sequence[Query],
    width: int = 12,
    height: int = 8,
    max_value: float | None = None,
    thresholds: Sequence[tuple[float | None, str]] = ((None, GREEN),),
) -> bargauge.Panel:
    panel = (
        bargauge.Panel()
        .id(ids.next())
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(height)
        .display_mode(BarGaugeDisplayMode.GRADIENT)
        .min(0)
        .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]))
        .thresholds(_thresholds(thresholds))
    )
    if max_value is not None:
        panel = panel.max(max_value)
    return _with_targets(panel, queries)


def table_panel(
    ids: PanelIds,
    *,
    title: str,
    description: str,
    unit: str,
    queries: Sequence[Query],
    columns: dict[str, str],
    width: int = 24,
    height: int = 8,
) -> table.Panel:
    """A table of instant query results; `columns` maps the labels to show to their headers.

    Every other column (Time, __name__, job, instance) is hidden, and the value column
    ("Value", or "Value #A"... with several queries) keeps the order given in `columns`.
    """
    hidden = {name: True for name in ("Time", "__name__", "job", "instance") if name not in columns}
    order = {name: index for index, name in enumerate(columns)}
    organize = DataTransformerConfig(
        id_val="organize",
        options={"excludeByName": hidden, "indexByName": order, "renameByName": dict(columns)},
    )
    panel = (
        table.Panel()
        .id(ids.next())
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(height)
    )
    if len(queries) > 1:
        # One row per label set, one column per query.
        panel = panel.with_transformation(DataTransformerConfig(id_val="merge", options={}))
    return _with_targets(panel.with_transformation(organize), queries)


def new_dashboard(*, uid: str, title: str, description: str) -> dashboard.Dashboard:
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["cognocient", "ai-agents", "cost"])
        .editable()
        .time("now-1h", "now")
        .refresh("30s")
        .timezone("browser")
        .with_variable(datasource_variable())
    )


def row(ids: PanelIds, title: str) -> dashboard.Row:
    return dashboard.Row(title).id(ids.next())
