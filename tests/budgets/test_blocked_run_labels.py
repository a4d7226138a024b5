"""A run blocked at the collector's budget check is counted under its own feature and agent.

The check request names both; the run's spans may not have reached the collector yet (the SDK's
batch processor holds them for seconds), so the collector must take them from the check rather
than count the run's end as `feature="unknown", agent="unknown"`.
"""

from __future__ import annotations

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind
from prometheus_client.parser import text_string_to_metric_families

from .e2e import http_get, start_collector, wait_for_run

BUDGET = "document-processor per run"
PER_RUN = [
    {
        "name": BUDGET,
        "scope": "feature",
        "scope_value": "document-processor",
        "per_run_limit_usd": "0.50",
        "enforcement": "block",
    },
]


@pytest.fixture
def collector(tmp_path):
    collector = start_collector(tmp_path, PER_RUN)
    yield collector
    collector.stop(grace=2)


def check(collector, *, run_id: str, agent: str, cost: float, step: int) -> str:
    body = {
        "run_id": run_id,
        "feature": "document-processor",
        "agent": agent,
        "estimated_cost_usd": cost,
        "span_id": f"{step:016x}",
        "step": step,
    }
    response = httpx.post(f"http://127.0.0.1:{collector.http_port}/v1/budget/check", json=body, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()["decision"]


def samples(collector, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    text = httpx.get(f"http://127.0.0.1:{collector.metrics_port}/metrics", timeout=5).text
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def test_a_run_blocked_before_any_span_arrived_keeps_its_feature_and_agent(collector):
    assert check(collector, run_id="runaway", agent="summariser", cost=0.3, step=1) == "allow"
    assert check(collector, run_id="runaway", agent="summariser", cost=0.3, step=2) == "block"

    ended = samples(collector, "cognocient_runs_ended_total")
    assert ended == {
        (("agent", "summariser"), ("feature", "document-processor"), ("status", "blocked")): 1.0
    }
    blocked_runs = samples(collector, "cognocient_budget_blocked_runs_total")
    assert blocked_runs == {
        (("agent", "summariser"), ("budget", BUDGET), ("feature", "document-processor")): 1.0
    }
    run = http_get(collector, "/v1/runs/runaway").json()
    assert (run["status"], run["feature"], run["agent"]) == ("blocked", "document-processor", "summariser")


def test_a_run_known_from_its_llm_spans_gets_its_agent_from_the_check(collector):
    """An LLM span of the run arrived first: feature known, agent not (only the run root names
    it). The check that blocks the run fills in the agent."""
    provider = TracerProvider()
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"127.0.0.1:{collector.grpc_port}", insecure=True))
    )
    span = provider.get_tracer("test").start_span("chat gpt-4o", kind=SpanKind.CLIENT, attributes={
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.input_tokens": 100,
        "gen_ai.usage.output_tokens": 10,
        "cognocient.run.id": "half-known",
        "cognocient.feature": "document-processor",
        "cognocient.cost.usd": 0.1,
        "cognocient.step": 1,
    })
    span.end()
    provider.shutdown()
    before = wait_for_run(collector, "half-known", steps=1)
    assert (before["feature"], before["agent"]) == ("document-processor", None)

    # 0.1 spent + 0.45 asked > 0.50: blocked.
    body = {"run_id": "half-known", "feature": "document-processor", "agent": "summariser",
            "estimated_cost_usd": 0.45, "span_id": "00000000000000b2", "step": 2}
    response = httpx.post(f"http://127.0.0.1:{collector.http_port}/v1/budget/check", json=body, timeout=5)
    assert response.json()["decision"] == "block", response.text

    run = http_get(collector, "/v1/runs/half-known").json()
    assert (run["status"], run["feature"], run["agent"]) == ("blocked", "document-processor", "summariser")
    ended = samples(collector, "cognocient_runs_ended_total")
    assert ended == {
        (("agent", "summariser"), ("feature", "document-processor"), ("status", "blocked")): 1.0
    }
