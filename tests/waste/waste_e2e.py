"""End-to-end parts for the waste tests: a real collector process, and an agent's OTel SDK exporting
to it over OTLP/gRPC."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from prometheus_client.parser import text_string_to_metric_families


class CollectorProcess:
    """`python -m collector.main --config FILE`; its ports are read from the `collector.ready` log line."""

    def __init__(self, folder: Path, config: dict[str, Any]) -> None:
        self.folder = folder
        self.config_path = folder / "collector.yaml"
        self.log_path = folder / "collector.log"
        base: dict[str, Any] = {
            "receivers": {"otlp": {"grpc": {"endpoint": "127.0.0.1:0"}, "http": {"endpoint": "127.0.0.1:0"}}},
            "prometheus": {"endpoint": "127.0.0.1:0"},
            "store": {"path": str(folder / "collector.db")},
        }
        self.config_path.write_text(yaml.safe_dump({**base, **config}))
        self.process: subprocess.Popen[bytes] | None = None
        self.ready: dict[str, Any] = {}

    def start(self, timeout: float = 30.0) -> CollectorProcess:
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "collector.main", "--config", str(self.config_path)],
                stdout=subprocess.DEVNULL, stderr=log, cwd=self.folder,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log_path.read_bytes()[offset:].decode(errors="replace").splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("event") == "collector.ready":
                    self.ready = entry
                    return self
            if self.process.poll() is not None:
                log = self.log_path.read_text()
                raise AssertionError(f"collector exited {self.process.returncode}: {log}")
            time.sleep(0.05)
        raise AssertionError(f"collector not ready within {timeout}s: {self.log_path.read_text()}")

    def stop(self) -> None:
        """SIGTERM: the collector drains (commits what it accepted) and exits."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.ready['http_port']}"

    @property
    def grpc_endpoint(self) -> str:
        return f"127.0.0.1:{self.ready['grpc_port']}"

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
        text = httpx.get(f"http://127.0.0.1:{self.ready['metrics_port']}/metrics", timeout=10).text
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
