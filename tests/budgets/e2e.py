"""End-to-end harness: a real collector (with its budgets plugin) on free ports and an injectable
clock, and an instrumented agent in this process (real openai SDK, OTLP/gRPC exporter, the
remote budget guard) that talks to the fake LLM server."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import openai
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from prometheus_client import CollectorRegistry

import cognocient_otel
from cognocient_otel.remote_budget import configure_budget_client
from cognocient_otel.testing import LLMServer
from collector.app import Collector
from collector.config import parse_config

MESSAGES = [{"role": "user", "content": "summarise the next page of the document"}]


class EpochClock:
    """The collector's clock (epoch seconds), moved by the test."""

    def __init__(self, start: datetime | None = None) -> None:
        self.offset = 0.0 if start is None else start.timestamp() - time.time()

    def __call__(self) -> float:
        return time.time() + self.offset

    def set(self, moment: datetime) -> None:
        self.offset = moment.replace(tzinfo=moment.tzinfo or timezone.utc).timestamp() - time.time()


def start_collector(
    tmp_path: Path, budgets: list[dict[str, Any]], clock: EpochClock | None = None
) -> Collector:
    config = parse_config(
        {
            "receivers": {"otlp": {"grpc": {"endpoint": "127.0.0.1:0"}, "http": {"endpoint": "127.0.0.1:0"}}},
            "prometheus": {"endpoint": "127.0.0.1:0"},
            "store": {"path": str(tmp_path / "collector.db")},
            "budgets": budgets,
        }
    )
    collector = Collector(config, registry=CollectorRegistry(), clock=clock or time.time)
    return collector.start()


class Agent:
    """This process, instrumented against one collector: spans exported over OTLP/gRPC, and the
    collector's budgets checked before each LLM call (the same endpoint)."""

    def __init__(
        self,
        collector: Collector,
        llm: LLMServer,
        *,
        failure_policy: str = "fail_open",
        grpc_endpoint: str | None = None,
    ) -> None:
        endpoint = grpc_endpoint or f"http://127.0.0.1:{collector.grpc_port}"
        self.collector = collector
        self.provider = TracerProvider()
        self.provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True), schedule_delay_millis=100)
        )
        self.guard = configure_budget_client(endpoint, failure_policy=failure_policy, timeout_seconds=1.0)
        cognocient_otel.instrument(tracer_provider=self.provider, guards=[self.guard])
        self.client = openai.OpenAI(base_url=llm.base_url + "/v1", api_key="test", max_retries=0)

    def chat(self, *, model: str = "gpt-4o", max_tokens: int | None = 4000) -> Any:
        kwargs: dict[str, Any] = {"max_tokens": max_tokens} if max_tokens is not None else {}
        return self.client.chat.completions.create(model=model, messages=MESSAGES, **kwargs)

    def close(self) -> None:
        cognocient_otel.uninstrument()
        self.guard.close()
        self.provider.shutdown()


def http_get(collector: Collector, path: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{collector.http_port}{path}", timeout=5)


def wait_for_run(collector: Collector, run_id: str, *, steps: int, timeout: float = 15.0) -> dict[str, Any]:
    """The run as the runs API reports it, once `steps` LLM calls of it have been ingested."""
    deadline = time.monotonic() + timeout
    while True:
        response = http_get(collector, f"/v1/runs/{run_id}")
        if response.status_code == 200 and response.json()["steps"] >= steps:
            return response.json()
        assert time.monotonic() < deadline, f"run {run_id} never reached {steps} steps: {response.text}"
        time.sleep(0.05)


def requests_of_run(llm: LLMServer, run_id: str) -> int:
    return sum(1 for request in llm.requests if request.headers.get("x-cost-run-id") == run_id)
