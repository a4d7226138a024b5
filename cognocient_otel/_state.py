"""The tracer runs use: the instrumentor's (given `tracer_provider=`) or the global one."""

from __future__ import annotations

from opentelemetry import trace

_INSTRUMENTATION_NAME = "cognocient_otel"
_tracer: trace.Tracer | None = None


def set_tracer(tracer: trace.Tracer | None) -> None:
    global _tracer
    _tracer = tracer


def tracer() -> trace.Tracer:
    return _tracer if _tracer is not None else trace.get_tracer(_INSTRUMENTATION_NAME)
