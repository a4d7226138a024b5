"""The decoder on its own: identity, classification, and the lazily decoded attributes."""

from __future__ import annotations

from decimal import Decimal

from collector_harness import llm_attributes, make_request, make_span

from collector.decode import decode_request, parse_protobuf


def decode(*spans, resource=None):
    body = make_request(*spans, resource=resource).SerializeToString()
    return decode_request(parse_protobuf(body), transport="grpc")


def test_an_llm_span_becomes_a_typed_record_with_its_other_attributes_on_demand() -> None:
    span = make_span(
        llm_attributes(
            "run-1",
            cost=0.125,
            **{
                "cognocient.step": 3,
                "cognocient.request.fingerprint": "abc123",
                "error.type": "timeout",
                "custom.flag": True,
                "custom.list": ["a", "b"],
                "gen_ai.usage.cache_write.input_tokens": 40,
            },
        )
    )
    batch = decode(span, resource={"service.name": "svc", "cognocient.tenant": "acme"})
    [record] = batch.records
    assert (record.tenant, record.run_id, record.is_llm, record.is_run_root) == ("acme", "run-1", True, False)
    assert (record.step, record.fingerprint, record.error_type) == (3, "abc123", "timeout")
    assert record.cost_usd == Decimal("0.125") and record.cost_source == "price_table"
    assert record.cache_creation_tokens == 40
    assert record.trace_id == span.trace_id.hex() and len(record.trace_id) == 32
    attributes = record.attributes()
    assert attributes["custom.flag"] is True
    assert attributes["custom.list"] == ["a", "b"]
    assert attributes["service.name"] == "svc"


def test_agent_tool_and_plain_spans_are_classified() -> None:
    root = make_span(
        {"gen_ai.operation.name": "invoke_agent", "cognocient.run.id": "r", "gen_ai.usage.input_tokens": 999},
        name="invoke_agent a",
    )
    tool = make_span(
        {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": "search",
            "gen_ai.tool.call.arguments": '{"q": "x"}',
            "cognocient.run.id": "r",
        },
        parent_span_id=b"\x01" * 8,
    )
    plain_child = make_span({"http.method": "GET"}, parent_span_id=b"\x02" * 8)
    batch = decode(root, tool, plain_child)
    assert batch.received == 3
    root_record, tool_record = batch.records  # the plain child span belongs to no run
    assert root_record.is_run_root and not root_record.is_llm and root_record.input_tokens == 0
    assert tool_record.tool_name == "search" and len(tool_record.tool_args_hash) == 16
    assert not tool_record.is_run_root


def test_reported_costs_and_tokens_of_other_types_take_the_general_path() -> None:
    as_double = make_span(llm_attributes("r", cost=0.5, **{"cognocient.cost.source": "provider"}))
    as_text = make_span(llm_attributes("r", cost=None, **{"cognocient.cost.usd": "0.25",
                                                          "cognocient.cost.source": ["provider"]}))
    as_int = make_span(llm_attributes("r", cost=None, **{"cognocient.cost.usd": 2,
                                                         "gen_ai.usage.input_tokens": "70"}))
    out_of_range = make_span(llm_attributes("r", cost=2_000_000.0))
    negative = make_span(llm_attributes("r", cost=-1.0, **{"gen_ai.usage.cost.amount": 0.75}))
    records = decode(as_double, as_text, as_int, out_of_range, negative).records
    assert [(r.cost_usd, r.cost_source) for r in records] == [
        (Decimal("0.5"), "provider"), (Decimal("0.25"), "price_table"), (Decimal(2), "price_table"),
        (None, None), (Decimal("0.75"), "provider"),
    ]
    assert records[2].input_tokens == 70


def test_labels_ids_and_tenants_too_long_are_cut_or_rejected() -> None:
    long_model = make_span(llm_attributes("r", model="m" * 300))
    long_run = make_span(llm_attributes("x" * 257))
    span_tenant = make_span(llm_attributes("r", **{"cognocient.tenant": "beta"}))
    batch = decode(long_model, long_run, span_tenant, resource={"cognocient.tenant": "acme"})
    assert batch.rejected == 1 and "cognocient.run.id is longer" in batch.reject_messages[0]
    model_record, tenant_record = batch.records
    assert model_record.request_model == "m" * 256 and model_record.tenant == "acme"
    assert tenant_record.tenant == "beta"
    too_long = decode(make_span(llm_attributes("r")), resource={"cognocient.tenant": "t" * 257})
    assert too_long.rejected == 1 and not too_long.records
