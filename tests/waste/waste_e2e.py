"""End-to-end parts for the waste tests: a real collector process, and an agent's OTel SDK exporting
to it over OTLP/gRPC."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from prometheus_client.parser import text_string_to_metric_families

from collector.process import CollectorProcess, write_config


class WasteCollector(CollectorProcess):
    """The collector process on `folder`, `config`'s sections over free ports and a store in
    `folder`; with the reads the waste tests make of it."""

    def __init__(self, folder: Path, config: dict[str, Any]) -> None:
        base: dict[str, Any] = {
            "receivers": {"otlp": {"grpc": {"endpoint": "127.0.0.1:0"}, "http": {"endpoint": "127.0.0.1:0"}}},
            "prometheus": {"endpoint": "127.0.0.1:0"},
            "store": {"path": str(folder / "collector.db")},
        }
        super().__init__(write_config(folder, {**base, **config}))

    def start(self, timeout_seconds: float | None = None) -> WasteCollector:
        super().start(timeout_seconds)
        return self

    def run(self, run_id: str) -> dict[str, Any] | None:
        response = httpx.get(f"{self.http_url}/v1/runs/{run_id}", timeout=10)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()

    def runs(self, **params: Any) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.http_url}/v1/runs", params=params, timeout=10)
        response.raise_for_status()
        return response.json()["runs"]

    def waste_flag_counts(self) -> dict[tuple[str, str], float]:
        """`cognocient_waste_flags_total` samples by (feature, kind), from a real scrape."""
        text = httpx.get(self.metrics_url, timeout=10).text
        counts = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "cognocient_waste_flags_total":
                    counts[(sample.labels["feature"], sample.labels["kind"])] = sample.value
        return counts


def exporting_provider(collector: CollectorProcess, *, service: str = "waste-e2e-agent") -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    exporter = OTLPSpanExporter(endpoint=collector.grpc_endpoint, insecure=True, timeout=10)
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=50))
    return provider


def wait_for(predicate: Callable[[], Any], *, timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")
