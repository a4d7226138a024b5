"""Run status over time (active -> expired -> active again), health endpoints, restart state."""

from __future__ import annotations

import uuid
from decimal import Decimal

import grpc
from collector_harness import get_json, llm_attributes, make_request, make_span, wait_for
from grpc_health.v1 import health_pb2, health_pb2_grpc

from collector.app import Collector

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def export(collector: Collector, *spans) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{collector.grpc_port}") as channel:
        channel.unary_unary(EXPORT)(make_request(*spans).SerializeToString(), timeout=10)


def run_status(collector: Collector, run_id: str) -> str:
    return get_json(f"http://127.0.0.1:{collector.http_port}/v1/runs/{run_id}")[1]["status"]


def test_idle_runs_expire_and_a_late_span_makes_them_active_again(start_collector) -> None:
    collector = start_collector(runs={"idle_timeout_seconds": 0.3})
    run_id = str(uuid.uuid4())
    export(collector, make_span(llm_attributes(run_id, cost=0.2)))
    assert run_status(collector, run_id) == "active"
    wait_for(lambda: run_status(collector, run_id) == "expired", timeout=5, message="the run to expire")
    assert collector.stats.runs_ended.get(("support", "unknown", "expired")) == 1
    assert collector.stats.run_cost.snapshot()[0][2] == 0.2  # the per-run histogram saw the run once

    export(collector, make_span(llm_attributes(run_id, cost=0.3)))
    _, run = get_json(f"http://127.0.0.1:{collector.http_port}/v1/runs/{run_id}")
    assert run["status"] == "active"
    assert Decimal(run["cost_usd_exact"]) == Decimal("0.5")


def test_a_finished_run_keeps_counting_late_spans(collector: Collector) -> None:
    run_id = str(uuid.uuid4())
    root = make_span(
        {"gen_ai.operation.name": "invoke_agent", "cognocient.run.id": run_id, "gen_ai.agent.name": "a"},
        name="invoke_agent a",
    )
    export(collector, root)
    assert run_status(collector, run_id) == "finished"
    export(collector, make_span(llm_attributes(run_id, cost=0.1)))  # a sub-process's span, late
    _, run = get_json(f"http://127.0.0.1:{collector.http_port}/v1/runs/{run_id}")
    assert run["status"] == "finished" and run["steps"] == 1 and run["agent"] == "a"


def test_health_service_and_healthz(collector: Collector) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{collector.grpc_port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "opentelemetry.proto.collector.trace.v1.TraceService"):
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert response.status == health_pb2.HealthCheckResponse.SERVING
    assert get_json(f"http://127.0.0.1:{collector.http_port}/healthz") == (200, {"status": "ok"})
    assert get_json(f"http://127.0.0.1:{collector.http_port}/v1/nothing")[0] == 404


def test_state_is_rebuilt_from_the_store_on_start(start_collector) -> None:
    first = start_collector()
    run_id = str(uuid.uuid4())
    export(first, make_span(llm_attributes(run_id, cost=0.4)))
    first.stop()
    second = start_collector()
    assert second.state.get(("default", run_id)) is not None
    export(second, make_span(llm_attributes(run_id, cost=0.1)))
    _, run = get_json(f"http://127.0.0.1:{second.http_port}/v1/runs/{run_id}")
    assert Decimal(run["cost_usd_exact"]) == Decimal("0.5") and run["models"]["gpt-4o"]["calls"] == 2
