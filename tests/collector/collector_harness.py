"""Helpers of the collector tests: collector configs, real OTel SDK exporters, and span builders
with the attribute sets of real GenAI instrumentations.

Test modules import them from here (`from collector_harness import ...`), not from `conftest`:
every test folder has a `conftest` module, and which one that name means depends on the
folders pytest was given. The fixtures are in this folder's conftest.py; the collector as a
subprocess is `collector.process.CollectorProcess`."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind

from collector.app import Collector


def base_config(tmp_path: Path, **sections: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "receivers": {"otlp": {"grpc": {"endpoint": "127.0.0.1:0"}, "http": {"endpoint": "127.0.0.1:0"}}},
        "prometheus": {"endpoint": "127.0.0.1:0"},
        "store": {"path": str(tmp_path / "collector.db")},
        "log": {"level": "info"},
    }
    for name, value in sections.items():
        if isinstance(value, dict) and isinstance(config.get(name), dict):
            config[name] = {**config[name], **value}
        else:
            config[name] = value
    return config


# -- sending spans the way agents do -----------------------------------------------------------------


def grpc_exporter(collector: Collector) -> SpanExporter:
    return GrpcSpanExporter(endpoint=f"127.0.0.1:{collector.grpc_port}", insecure=True, timeout=10)


def http_exporter(collector: Collector, **kwargs: Any) -> SpanExporter:
    return HttpSpanExporter(
        endpoint=f"http://127.0.0.1:{collector.http_port}/v1/traces", timeout=10, **kwargs
    )


class Agent:
    """An OTel SDK TracerProvider exporting over OTLP, producing spans shaped like GenAI instrumentations'."""

    def __init__(self, exporter: SpanExporter, *, service: str = "agent-under-test") -> None:
        self.provider = TracerProvider(resource=Resource.create({"service.name": service}))
        self.provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=50))
        self.tracer = self.provider.get_tracer("tests.collector")

    def llm_call(self, *, model: str, attributes: dict[str, Any], start_ns: int | None = None) -> None:
        with self.tracer.start_as_current_span(
            f"chat {model}", kind=SpanKind.CLIENT, start_time=start_ns
        ) as span:
            span.set_attributes(
                {"gen_ai.operation.name": "chat", "gen_ai.request.model": model, **attributes}
            )

    def flush(self) -> None:
        assert self.provider.force_flush(10_000)

    def shutdown(self) -> None:
        self.provider.shutdown()


def get_json(url: str, **params: Any) -> tuple[int, Any]:
    response = httpx.get(url, params=params, timeout=10)
    return response.status_code, response.json()


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, message: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {message}")


# -- hand-made OTLP requests (for what exporters never send) -----------------------------------------


def any_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, list):
        holder = AnyValue()
        holder.array_value.values.extend(any_value(item) for item in value)
        return holder
    return AnyValue(string_value=str(value))


def make_span(
    attributes: dict[str, Any] | None = None,
    *,
    trace_id: bytes | None = None,
    span_id: bytes | None = None,
    parent_span_id: bytes = b"",
    name: str = "chat gpt-4o",
    start_ns: int | None = None,
    duration_ns: int = 50_000_000,
) -> Span:
    start = time.time_ns() - 1_000_000_000 if start_ns is None else start_ns
    return Span(
        trace_id=secrets.token_bytes(16) if trace_id is None else trace_id,
        span_id=secrets.token_bytes(8) if span_id is None else span_id,
        parent_span_id=parent_span_id,
        name=name,
        kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=start,
        end_time_unix_nano=start + duration_ns,
        attributes=[KeyValue(key=key, value=any_value(value)) for key, value in (attributes or {}).items()],
    )


def make_request(*spans: Span, resource: dict[str, Any] | None = None) -> ExportTraceServiceRequest:
    resource_spans = ResourceSpans(scope_spans=[ScopeSpans(spans=list(spans))])
    for key, value in (resource or {}).items():
        resource_spans.resource.attributes.append(KeyValue(key=key, value=any_value(value)))
    return ExportTraceServiceRequest(resource_spans=[resource_spans])


def llm_attributes(
    run_id: str, *, model: str = "gpt-4o", cost: float | None = 0.01, **extra: Any
) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": model,
        "gen_ai.response.model": model,
        "gen_ai.usage.input_tokens": 1000,
        "gen_ai.usage.output_tokens": 100,
        "cognocient.run.id": run_id,
        "cognocient.feature": "support",
    }
    if cost is not None:
        attributes["cognocient.cost.usd"] = cost
        attributes["cognocient.cost.source"] = "price_table"
    attributes.update(extra)
    return attributes
