"""Fixtures: a fake LLM server and an instrumentation bound to a per-test TracerProvider."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import cognocient_otel
from cognocient_otel.semconv import LLM_OPERATIONS
from cognocient_otel.testing import LLMServer


@pytest.fixture
def llm_server() -> Iterator[LLMServer]:
    with LLMServer() as server:
        yield server


class Traced:
    """The provider and exporter of one test, plus helpers to find spans."""

    def __init__(self, provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
        self.provider = provider
        self.exporter = exporter

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def llm_spans(self) -> list[ReadableSpan]:
        return [
            span for span in self.spans() if span.attributes.get("gen_ai.operation.name") in LLM_OPERATIONS
        ]

    def one_llm_span(self) -> ReadableSpan:
        spans = self.llm_spans()
        assert len(spans) == 1, [span.name for span in self.spans()]
        return spans[0]


def new_traced() -> Traced:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Traced(provider, exporter)


@pytest.fixture
def instrument() -> Iterator[Callable[..., Traced]]:
    """Call it (with instrument() keyword arguments) to instrument against a fresh provider,
    or against the provider of a `Traced` passed first."""
    started: list[Traced] = []

    def start(traced: Traced | None = None, **kwargs: Any) -> Traced:
        traced = traced or new_traced()
        cognocient_otel.instrument(tracer_provider=traced.provider, **kwargs)
        started.append(traced)
        return traced

    yield start
    cognocient_otel.uninstrument()
    for traced in started:
        traced.provider.shutdown()


@pytest.fixture
def make_traced() -> Callable[[], Traced]:
    """A fresh provider + in-memory exporter, not yet instrumented."""
    return new_traced


@pytest.fixture
def traced(instrument: Callable[..., Traced]) -> Traced:
    return instrument()
