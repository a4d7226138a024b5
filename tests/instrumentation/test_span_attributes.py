"""Our answer attributes written straight into the SDK span must read back exactly as
`set_attributes` would have stored them, and every case the SDK treats specially goes through
`set_attributes` itself."""

from __future__ import annotations

import logging

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cognocient_otel.llm import span_attributes
from cognocient_otel.llm.span_attributes import add_clean_attributes

START = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini", "server.port": 443}
ANSWER = {
    "gen_ai.usage.input_tokens": 13,
    "gen_ai.usage.output_tokens": 20,
    "cognocient.cost.usd": 1.5e-05,
    "cognocient.cost.source": "price_table",
    "cognocient.usage.complete": True,
    "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
    "gen_ai.response.finish_reasons": ("stop", "length"),
}


def exported(limits: SpanLimits | None, attributes: dict, *, start: dict = START, fast: bool) -> tuple:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(span_limits=limits, shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    span = provider.get_tracer("test").start_span("chat gpt-4o-mini", attributes=start)
    if fast:
        add_clean_attributes(span, attributes)
    else:
        span.set_attributes(attributes)
    span.end()
    [finished] = exporter.get_finished_spans()
    return list(finished.attributes.items()), finished.dropped_attributes


def test_the_sdk_span_is_recognised() -> None:
    provider = TracerProvider(shutdown_on_exit=False)
    span = provider.get_tracer("test").start_span("x")
    assert span_attributes._probe(type(span)) is True


@pytest.mark.parametrize(
    ("limits", "start"),
    [
        (None, START),
        (SpanLimits(max_span_attribute_length=5), START),  # values truncated by the SDK
        (SpanLimits(max_span_attributes=6), START),  # the oldest dropped by the SDK
        (None, dict(START, **{"gen_ai.response.model": "set-before"})),  # a key set twice
    ],
)
def test_attributes_read_back_as_set_attributes_stores_them(limits, start) -> None:
    fast = exported(limits, ANSWER, start=start, fast=True)
    assert fast == exported(limits, ANSWER, start=start, fast=False)


def test_an_ended_span_is_left_alone_as_the_sdk_does(caplog) -> None:
    provider = TracerProvider(shutdown_on_exit=False)
    span = provider.get_tracer("test").start_span("x", attributes=START)
    span.end()
    with caplog.at_level(logging.WARNING):
        add_clean_attributes(span, ANSWER)
    assert dict(span.attributes) == START
    assert any("ended span" in record.getMessage() for record in caplog.records)


def test_other_spans_get_set_attributes() -> None:
    class RecordingSpan(trace.NonRecordingSpan):
        def __init__(self) -> None:
            super().__init__(trace.INVALID_SPAN_CONTEXT)
            self.set_calls: list[dict] = []

        def set_attributes(self, attributes) -> None:
            self.set_calls.append(dict(attributes))

    span = RecordingSpan()
    add_clean_attributes(span, ANSWER)
    assert span.set_calls == [ANSWER]
    add_clean_attributes(trace.INVALID_SPAN, ANSWER)  # no error on a non-recording span
