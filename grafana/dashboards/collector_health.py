"""The "Collector health" dashboard: spans in and out, requests, latency, per-run series."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from grafana.dashboards.common import (
    EMPTY_WHEN_CLEAN,
    GREEN,
    ORANGE,
    RED,
    PanelIds,
    Query,
    label_variable,
    new_dashboard,
    row,
    stat_panel,
    table_panel,
    timeseries_panel,
)

UID = "cognocient-collector-health"
INSTANCE = 'instance=~"$instance"'
# The collector labels requests with the gRPC code name or the HTTP status code.
REQUEST_ERROR = 'status!~"OK|2.."'


def _rate(metric: str, by: str, extra: str = "") -> str:
    matchers = f"{INSTANCE}, {extra}" if extra else INSTANCE
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({metric}{{{matchers}}}[$__rate_interval]))"


def _quantiles(metric: str, by: str) -> list[Query]:
    grouping = f"le, {by}" if by else "le"
    legend_suffix = f" {{{{{by}}}}}" if by else ""
    return [
        Query(
            f"histogram_quantile({q}, sum by ({grouping}) "
            f"(rate({metric}_bucket{{{INSTANCE}}}[$__rate_interval])))",
            legend=f"p{round(q * 100)}{legend_suffix}",
        )
        for q in (0.5, 0.99)
    ]


def _span_panels(ids: PanelIds) -> list:
    spans = "cognocient_collector_spans"
    return [
        timeseries_panel(
            ids,
            title="Spans in and out",
            description="Spans per second received by the OTLP receivers, accepted into the store, "
            "rejected and delivered twice.",
            unit="short",
            queries=[
                Query(_rate(f"{spans}_received_total", ""), legend="received"),
                Query(_rate(f"{spans}_accepted_total", ""), legend="accepted"),
                Query(_rate(f"{spans}_rejected_total", ""), legend="rejected"),
                Query(_rate(f"{spans}_duplicate_total", ""), legend="duplicate"),
            ],
        ),
        timeseries_panel(
            ids,
            title="Spans received by transport",
            description="Spans per second received over OTLP/gRPC and OTLP/HTTP.",
            unit="short",
            queries=[Query(_rate(f"{spans}_received_total", "transport"), legend="{{transport}}")],
        ),
        timeseries_panel(
            ids,
            title="Spans rejected by reason",
            description="Spans refused per second (malformed, unusable, overload). "
            f"{EMPTY_WHEN_CLEAN}: nothing is rejected until a client sends bad data or the "
            "collector is overloaded.",
            unit="short",
            queries=[Query(_rate(f"{spans}_rejected_total", "transport, reason"),
                           legend="{{transport}} {{reason}}")],
        ),
        timeseries_panel(
            ids,
            title="Duplicate spans",
            description="Spans delivered again (exporter retries) and not counted twice. "
            f"{EMPTY_WHEN_CLEAN}: exporters only resend after a failed export.",
            unit="short",
            queries=[Query(_rate(f"{spans}_duplicate_total", "transport"), legend="{{transport}}")],
        ),
    ]


def _request_panels(ids: PanelIds) -> list:
    return [
        timeseries_panel(
            ids,
            title="Requests by transport and status",
            description="Requests per second to the collector (OTLP export, budget checks, run API).",
            unit="reqps",
            queries=[Query(_rate("cognocient_collector_requests_total", "transport, status"),
                           legend="{{transport}} {{status}}")],
        ),
        timeseries_panel(
            ids,
            title="Request errors by transport",
            description="Requests per second answered with an error (gRPC code other than OK, HTTP "
            f"status other than 2xx). {EMPTY_WHEN_CLEAN}: a healthy collector answers none.",
            unit="reqps",
            queries=[Query(_rate("cognocient_collector_requests_total", "transport, status", REQUEST_ERROR),
                           legend="{{transport}} {{status}}")],
        ),
        timeseries_panel(
            ids,
            title="Processing latency by stage",
            description="Time to process one export batch, p50 and p99, by pipeline stage.",
            unit="s",
            queries=_quantiles("cognocient_collector_processing_seconds", "stage"),
        ),
        timeseries_panel(
            ids,
            title="Store commit latency",
            description="Time to commit one batch to the store, p50 and p99.",
            unit="s",
            queries=_quantiles("cognocient_collector_store_commit_seconds", ""),
        ),
    ]


def _state_panels(ids: PanelIds) -> list:
    return [
        stat_panel(ids, title="Collector up", unit="short", width=6,
                   description="1 when Prometheus scraped the collector at its last attempt.",
                   queries=[Query(f'min(up{{job="cognocient-collector", {INSTANCE}}})', instant=True)],
                   thresholds=((None, RED), (1, GREEN))),
        stat_panel(ids, title="Export batches queued", unit="short", width=6,
                   description="Export batches waiting to be processed.",
                   queries=[Query(f"sum(cognocient_collector_queue_depth{{{INSTANCE}}})", instant=True)],
                   thresholds=((None, GREEN), (100, ORANGE))),
        stat_panel(ids, title="Per-run series used", unit="percent", width=6,
                   description="Series of cognocient_run_live_cost_usd against their cap "
                   "(prometheus.max_run_series): at 100% the cheaper runs drop out of the scrape.",
                   queries=[Query(f"100 * max(cognocient_run_series{{{INSTANCE}}}"
                                  f" / cognocient_run_series_limit{{{INSTANCE}}})", instant=True)],
                   thresholds=((None, GREEN), (80, ORANGE), (100, RED))),
        table_panel(ids, title="Collector versions", unit="short", width=6, height=4,
                    description="The version each collector instance runs.",
                    queries=[Query(f"cognocient_collector_build_info{{{INSTANCE}}}",
                                   instant=True, table=True)],
                    columns={"instance": "Instance", "version": "Version"}),
        timeseries_panel(
            ids,
            title="Per-run series against cap",
            description="Series of cognocient_run_live_cost_usd in each scrape, and the cap.",
            unit="short",
            queries=[
                Query(f"cognocient_run_series{{{INSTANCE}}}", legend="series {{instance}}"),
                Query(f"cognocient_run_series_limit{{{INSTANCE}}}", legend="cap {{instance}}"),
            ],
            width=24,
        ),
    ]


def build() -> dashboard.Dashboard:
    ids = PanelIds()
    board = (
        new_dashboard(uid=UID, title="Cognocient: collector health",
                      description="Spans in and out of the collector, requests, latency, per-run series.")
        .with_variable(label_variable("instance", "Instance", "cognocient_collector_build_info"))
    )
    for title, panels in (("State", _state_panels), ("Spans", _span_panels), ("Requests", _request_panels)):
        board = board.with_row(row(ids, title))
        for panel in panels(ids):
            board = board.with_panel(panel)
    return board
