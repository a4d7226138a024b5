"""configure(): spans leave over OTLP/gRPC to the endpoint, with run attribution and the
configured price overrides; bad arguments get clear errors."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider

import cognocient_otel
from cognocient_otel import settings
from cognocient_otel.testing import LLMServer


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.spans: list = []
        self.received = threading.Event()

    def Export(self, request, context):  # the gRPC method name
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                self.spans.extend(scope_spans.spans)
        self.received.set()
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    servicer = Receiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"http://127.0.0.1:{port}"
    server.stop(grace=None)


@pytest.fixture
def restore_settings() -> Iterator[None]:
    before = settings.current()
    yield
    settings.replace_current(before)
    cognocient_otel.uninstrument()


def attributes_of(span) -> dict:
    values = {}
    for item in span.attributes:
        value = item.value
        values[item.key] = getattr(value, value.WhichOneof("value"))
    return values


def test_spans_are_exported_over_otlp_grpc(receiver, restore_settings) -> None:
    servicer, endpoint = receiver
    provider = cognocient_otel.configure(
        endpoint,
        tracer_provider=TracerProvider(),
        price_overrides={"house-model": {"input": 1, "output": 4}},
        budget_failure_policy=None,
    )
    cognocient_otel.instrument(tracer_provider=provider)
    with LLMServer() as llm, cognocient_otel.run("exported", feature="f") as run, httpx.Client() as client:
        client.post(
            llm.base_url + "/v1/chat/completions",
            json={
                "model": "house-model",
                "messages": [{"role": "user", "content": "x" * 400}],
                "max_tokens": 250,
            },
        )
    provider.force_flush()
    assert servicer.received.wait(10)
    by_name = {span.name: attributes_of(span) for span in servicer.spans}
    llm_span = by_name["chat house-model"]
    assert llm_span["cognocient.run.id"] == run.id
    assert llm_span["cognocient.feature"] == "f"
    # 100 input tokens at $1/M + 250 output tokens at $4/M
    assert llm_span["cognocient.cost.usd"] == pytest.approx(100 / 1e6 + 250 * 4 / 1e6)
    assert by_name["invoke_agent exported"]["cognocient.run.id"] == run.id
    provider.shutdown()


def test_configure_rejects_bad_arguments(restore_settings) -> None:
    with pytest.raises(ValueError, match="URL"):
        cognocient_otel.configure(
            "localhost:4317", tracer_provider=TracerProvider(), budget_failure_policy=None
        )
    with pytest.raises(ValueError, match="input"):
        cognocient_otel.configure(
            tracer_provider=TracerProvider(), price_overrides={"m": {"output": 1}}, budget_failure_policy=None
        )
    with pytest.raises(ValueError, match="unknown key"):
        cognocient_otel.configure(
            tracer_provider=TracerProvider(),
            price_overrides={"m": {"input": 1, "output": 1, "cached": 1}},
            budget_failure_policy=None,
        )
    with pytest.raises(ValueError, match="default_max_output_tokens"):
        cognocient_otel.configure(
            tracer_provider=TracerProvider(), default_max_output_tokens=-5, budget_failure_policy=None
        )
