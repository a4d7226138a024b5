"""Spans sent by the OTel SDK's own OTLP exporters reach a real collector and roll up per run."""

from __future__ import annotations

import gzip
import json
import uuid
from decimal import Decimal
from urllib.parse import quote

import grpc
import httpx
from collector_harness import (
    Agent,
    get_json,
    grpc_exporter,
    http_exporter,
    llm_attributes,
    make_request,
    make_span,
)
from genai_prices import Usage, calc_price
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.trace import SpanKind

from collector.app import Collector

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def raw_grpc_export(collector: Collector, body: bytes) -> bytes:
    with grpc.insecure_channel(f"127.0.0.1:{collector.grpc_port}") as channel:
        call = channel.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)
        return call(body, timeout=10)


def run_url(collector: Collector, run_id: str) -> str:
    return f"http://127.0.0.1:{collector.http_port}/v1/runs/{run_id}"


def test_our_instrumentation_spans_roll_up_into_their_run_over_grpc(collector: Collector) -> None:
    run_id = str(uuid.uuid4())
    agent = Agent(grpc_exporter(collector))
    costs = [0.0123, 0.0045, 0.02]
    with agent.tracer.start_as_current_span("invoke_agent planner") as root:
        root.set_attributes(
            {
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": "planner",
                "cognocient.run.id": run_id,
                "cognocient.feature": "document-processor",
                # Usage totals of the children, as the conventions allow: never added again.
                "gen_ai.usage.input_tokens": 3000,
                "gen_ai.usage.output_tokens": 300,
            }
        )
        for step, cost in enumerate(costs, start=1):
            agent.llm_call(
                model="gpt-4o",
                attributes={
                    **llm_attributes(run_id, cost=cost),
                    "cognocient.feature": "document-processor",
                    "cognocient.step": step,
                    "gen_ai.usage.cache_read.input_tokens": 200,
                },
            )
    agent.flush()
    agent.shutdown()

    status, run = get_json(run_url(collector, run_id))
    assert status == 200
    assert Decimal(run["cost_usd_exact"]) == sum(Decimal(repr(cost)) for cost in costs)
    assert run["cost_usd"] == float(sum(Decimal(repr(cost)) for cost in costs))
    assert run["steps"] == 3
    assert run["tokens"] == {
        "input": 3000,
        "output": 300,
        "cache_read": 600,
        "cache_creation": 0,
        "reasoning": 0,
    }
    assert run["models"]["gpt-4o"]["calls"] == 3
    assert run["models"]["gpt-4o"]["input_tokens"] == 3000
    assert run["status"] == "finished"  # the invoke_agent root ended and arrived
    assert run["feature"] == "document-processor"
    assert run["agent"] == "planner"
    assert run["first_call"] < run["last_call"]
    assert run["duration_seconds"] > 0
    assert run["waste_flags"] == []


def test_other_instrumentations_spans_are_costed_with_genai_prices_over_http(collector: Collector) -> None:
    """Spans in the style of the official openai-v2 instrumentation and of OpenLLMetry (old
    gen_ai.system, cache_write): no cost attribute, no run id; the trace is the run."""
    agent = Agent(http_exporter(collector, compression=Compression.Gzip))
    with agent.tracer.start_as_current_span("POST /summarize", kind=SpanKind.SERVER) as root:
        trace_id = format(root.get_span_context().trace_id, "032x")
        agent.llm_call(
            model="gpt-4o-mini",
            attributes={
                "gen_ai.system": "openai",
                "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                "gen_ai.usage.input_tokens": 1200,
                "gen_ai.usage.output_tokens": 350,
            },
        )
        with agent.tracer.start_as_current_span("anthropic.chat", kind=SpanKind.CLIENT) as span:
            span.set_attributes(
                {
                    "gen_ai.system": "anthropic",
                    "gen_ai.request.model": "claude-sonnet-4-6",
                    "gen_ai.usage.input_tokens": 5000,
                    "gen_ai.usage.output_tokens": 800,
                    "gen_ai.usage.cache_read.input_tokens": 1000,
                    "gen_ai.usage.cache_write.input_tokens": 2000,
                }
            )
    agent.flush()
    agent.shutdown()

    expected_openai = calc_price(
        Usage(input_tokens=1200, output_tokens=350), model_ref="gpt-4o-mini-2024-07-18", provider_id="openai"
    ).total_price
    expected_anthropic = calc_price(
        Usage(input_tokens=5000, output_tokens=800, cache_read_tokens=1000, cache_write_tokens=2000),
        model_ref="claude-sonnet-4-6",
        provider_id="anthropic",
    ).total_price
    status, run = get_json(run_url(collector, trace_id))
    assert status == 200
    assert Decimal(run["cost_usd_exact"]) == expected_openai + expected_anthropic
    assert run["models"]["gpt-4o-mini-2024-07-18"]["cost_usd"] == float(expected_openai)
    assert run["models"]["claude-sonnet-4-6"]["cost_usd"] == float(expected_anthropic)
    assert run["tokens"]["cache_creation"] == 2000
    assert run["steps"] == 2
    assert run["status"] == "finished"  # the trace root ended


def test_provider_reported_cost_and_overrides_are_used(start_collector) -> None:
    collector = start_collector(
        pricing={"overrides": [{"model": "my-finetune", "input_per_mtok": 3.0, "output_per_mtok": 12.0}]}
    )
    run_id = "run-" + uuid.uuid4().hex
    request = make_request(
        make_span(
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "my-finetune",
                "gen_ai.usage.input_tokens": 1_000_000,
                "gen_ai.usage.output_tokens": 500_000,
                "cognocient.run.id": run_id,
            }
        ),
        make_span(
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.usage.input_tokens": 10,
                "gen_ai.usage.cost.amount": 0.5,
                "gen_ai.usage.cost.currency": "USD",
                "cognocient.run.id": run_id,
            }
        ),
        make_span(
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "no-such-model-xyz",
                "gen_ai.usage.input_tokens": 10,
                "cognocient.run.id": run_id,
            }
        ),
    )
    raw_grpc_export(collector, request.SerializeToString())
    status, run = get_json(run_url(collector, run_id))
    assert status == 200
    assert Decimal(run["cost_usd_exact"]) == Decimal("3") + Decimal("6") + Decimal("0.5")
    assert run["unpriced_calls"] == 1
    assert run["status"] == "active"  # no root span yet


def test_duplicate_delivery_counts_each_span_once(collector: Collector) -> None:
    run_id = str(uuid.uuid4())
    spans = [make_span(llm_attributes(run_id, cost=0.25)) for _ in range(4)]
    body = make_request(*spans, spans[0]).SerializeToString()  # one duplicate inside the request too
    raw_grpc_export(collector, body)
    raw_grpc_export(collector, body)  # the exporter retried: same spans again
    response = httpx.post(
        f"http://127.0.0.1:{collector.http_port}/v1/traces",
        content=body,
        headers={"Content-Type": "application/x-protobuf"},
        timeout=10,
    )
    assert response.status_code == 200
    status, run = get_json(run_url(collector, run_id))
    assert status == 200
    assert Decimal(run["cost_usd_exact"]) == Decimal("1.00")
    assert run["steps"] == 4
    assert collector.stats.spans_duplicate.get(("grpc",)) == 6
    assert collector.stats.spans_duplicate.get(("http",)) == 5


def test_otlp_json_with_hex_ids_and_gzip(collector: Collector) -> None:
    run_id = str(uuid.uuid4())
    trace_id = uuid.uuid4().hex
    payload = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-agent"}}]},
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": "00f067aa0ba902b7",
                                "name": "chat gpt-4o",
                                "kind": 3,
                                "startTimeUnixNano": "1700000000000000000",
                                "endTimeUnixNano": "1700000001000000000",
                                "attributes": [
                                    {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                                    {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}},
                                    {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "2000"}},
                                    {"key": "gen_ai.usage.output_tokens", "value": {"intValue": 100}},
                                    {"key": "cognocient.run.id", "value": {"stringValue": run_id}},
                                ],
                            }
                        ]
                    }
                ],
            }
        ]
    }
    response = httpx.post(
        f"http://127.0.0.1:{collector.http_port}/v1/traces",
        content=gzip.compress(json.dumps(payload).encode()),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    expected = calc_price(Usage(input_tokens=2000, output_tokens=100), model_ref="gpt-4o").total_price
    status, run = get_json(run_url(collector, run_id))
    assert status == 200
    assert Decimal(run["cost_usd_exact"]) == expected
    assert run["first_call"] == "2023-11-14T22:13:20.000000Z"


def test_runs_list_filters_and_orders(collector: Collector) -> None:
    spans = []
    for index, (feature, cost) in enumerate([("a", 0.3), ("b", 0.1), ("a", 0.2)]):
        spans.append(
            make_span(llm_attributes(f"list-run-{index}", cost=cost, **{"cognocient.feature": feature}))
        )
    raw_grpc_export(collector, make_request(*spans).SerializeToString())
    base = f"http://127.0.0.1:{collector.http_port}/v1/runs"
    status, body = get_json(base, feature="a", order="cost")
    assert status == 200
    assert [run["run_id"] for run in body["runs"]] == ["list-run-0", "list-run-2"]
    status, body = get_json(base, order="cost", limit=1)
    assert [run["run_id"] for run in body["runs"]] == ["list-run-0"]
    assert get_json(base, status="active")[1]["count"] == 3
    assert get_json(base, status="finished")[1]["count"] == 0
    assert get_json(base, status="bogus")[0] == 400
    assert get_json(base, order="name")[0] == 400
    assert get_json(base, limit="0")[0] == 400
    for odd_limit in ("\u00b2", "\u0665", "9" * 5000, "-1", " 1"):  # superscript two, Arabic-Indic five
        status, body = get_json(base, limit=odd_limit)
        assert status == 400 and "limit must be a whole number" in body["error"], odd_limit
    status, body = get_json(f"{base}/no-such-run")
    assert status == 404 and "no-such-run" in body["error"]


def test_runs_whose_ids_need_escaping_in_a_url_are_found(collector: Collector) -> None:
    run_ids = ["a b", "team/run-1", "r\u00e9sum\u00e9-1", "100%", "q?x#y"]
    spans = (make_span(llm_attributes(run_id)) for run_id in run_ids)
    raw_grpc_export(collector, make_request(*spans).SerializeToString())
    for run_id in run_ids:
        status, run = get_json(run_url(collector, quote(run_id, safe="")))
        assert status == 200 and run["run_id"] == run_id, run_id


def test_waste_flags_and_blocked_runs_through_the_store_api(collector: Collector) -> None:
    run_id = str(uuid.uuid4())
    raw_grpc_export(collector, make_request(make_span(llm_attributes(run_id))).SerializeToString())
    key = ("default", run_id)

    def flag_and_block(uow):
        first = uow.add_waste_flag(
            key, kind="loop", step=3, message="same request 3 times", wasted_cost_usd=Decimal("0.02")
        )
        again = uow.add_waste_flag(key, kind="loop", step=4, message="again")
        blocked = uow.mark_blocked(key, budget="per run", step=4)
        return first, again, blocked

    assert collector.run_job(flag_and_block) == (True, False, True)
    assert collector.run_job(lambda uow: uow.mark_blocked(key, budget="other", step=5)) is False
    # A later span does not unblock the run.
    raw_grpc_export(collector, make_request(make_span(llm_attributes(run_id))).SerializeToString())
    status, run = get_json(run_url(collector, run_id))
    assert status == 200
    assert run["status"] == "blocked"
    assert run["blocked_by"] == {"budget": "per run", "step": 4}
    assert run["waste_flags"] == [
        {"kind": "loop", "step": 3, "message": "same request 3 times", "wasted_cost_usd": 0.02}
    ]
    assert run["steps"] == 2
    base = f"http://127.0.0.1:{collector.http_port}/v1/runs"
    assert [r["run_id"] for r in get_json(base, flag="loop")[1]["runs"]] == [run_id]
    assert get_json(base, flag="retry_storm")[1]["count"] == 0
    assert [r["run_id"] for r in get_json(base, status="blocked")[1]["runs"]] == [run_id]
