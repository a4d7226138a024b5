"""Prometheus /metrics on a real scrape: promtool-clean, declared in the catalog, per-run series capped."""

from __future__ import annotations

import shutil
import subprocess
import uuid

import grpc
import httpx
import pytest
from collector_harness import llm_attributes, make_request, make_span
from prometheus_client.parser import text_string_to_metric_families

from collector import metric_catalog
from collector.app import Collector

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def export(collector: Collector, *spans) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{collector.grpc_port}") as channel:
        channel.unary_unary(EXPORT)(make_request(*spans).SerializeToString(), timeout=10)


def scrape(collector: Collector) -> str:
    response = httpx.get(f"http://127.0.0.1:{collector.metrics_port}/metrics", timeout=10)
    assert response.status_code == 200
    return response.text


def fill(collector: Collector, runs: int) -> list[str]:
    run_ids = []
    spans = []
    for index in range(runs):
        run_id = f"run-{index:03d}-{uuid.uuid4().hex[:6]}"
        run_ids.append(run_id)
        spans.append(make_span(llm_attributes(run_id, cost=0.01 * (index + 1), **{"cognocient.step": 1})))
        if index % 2 == 0:  # half of the runs finish: their root span arrives
            root = make_span(
                {
                    "gen_ai.operation.name": "invoke_agent",
                    "gen_ai.agent.name": "writer",
                    "cognocient.run.id": run_id,
                    "cognocient.feature": "support",
                },
                name="invoke_agent writer",
            )
            spans.append(root)
    export(collector, *spans)
    return run_ids


def test_exposition_passes_promtool_and_matches_the_catalog(collector: Collector) -> None:
    fill(collector, 12)
    with grpc.insecure_channel(f"127.0.0.1:{collector.grpc_port}") as channel, pytest.raises(grpc.RpcError):
        channel.unary_unary(EXPORT)(b"\xff\xff\xff", timeout=10)
    text = scrape(collector)
    promtool = shutil.which("promtool")
    assert promtool, "promtool is required (Debian package prometheus)"
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr

    declared = metric_catalog.exposed_series_names()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    for family in families.values():
        for sample in family.samples:
            spec = declared.get(sample.name)
            assert spec is not None, f"{sample.name} is not declared in the metric catalog"
            labels = set(sample.labels) - {"le"}
            assert labels == set(spec.labels), (sample.name, labels, spec.labels)

    def value(name: str, **labels: str) -> float:
        for family in families.values():
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return sample.value
        raise AssertionError(f"no sample {name} {labels}")

    assert value("cognocient_llm_calls_total", feature="support", model="gpt-4o", provider="openai") == 12
    assert abs(value("cognocient_llm_cost_usd_total", model="gpt-4o") - 0.78) < 1e-9
    assert value("cognocient_llm_tokens_total", model="gpt-4o", type="input") == 12_000
    assert value("cognocient_run_cost_usd_count", feature="support", agent="writer") == 6
    assert value("cognocient_runs_ended_total", status="finished") == 6
    assert value("cognocient_runs_active", feature="support", agent="unknown") == 6
    assert value("cognocient_collector_spans_received_total", transport="grpc") == 18
    assert value("cognocient_collector_spans_accepted_total", transport="grpc") == 18
    assert value("cognocient_collector_spans_rejected_total", transport="grpc", reason="malformed") == 1
    assert value("cognocient_collector_requests_total", transport="grpc", status="INVALID_ARGUMENT") == 1
    assert value("cognocient_collector_processing_seconds_count", stage="dedup") == 1
    assert value("cognocient_collector_store_commit_seconds_count") >= 1
    assert value("cognocient_collector_build_info") == 1


def test_per_run_series_are_capped_to_the_most_expensive(start_collector) -> None:
    collector = start_collector(prometheus={"endpoint": "127.0.0.1:0", "max_run_series": 5})
    run_ids = fill(collector, 40)
    families = {family.name: family for family in text_string_to_metric_families(scrape(collector))}
    live = families["cognocient_run_live_cost_usd"].samples
    assert len(live) == 5
    assert {sample.labels["run_id"] for sample in live} == set(run_ids[-5:])
    assert families["cognocient_run_series"].samples[0].value == 5
    assert families["cognocient_run_series_limit"].samples[0].value == 5
