"""A SpanProcessor that stamps `cognocient.run.id` on every span started inside a run.

It works for the spans of every instrumentation (HTTP, database, other GenAI libraries), not
only ours, because it reads the run from the context the span starts in: this process's
`run(...)` first, else the `cognocient.run.id` baggage entry that came from a caller process.
"""

from __future__ import annotations

from opentelemetry import context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider

from cognocient_otel import semconv as sc
from cognocient_otel._state import INSTRUMENTATION_NAME
from cognocient_otel.runs import run_id_from_context

__all__ = ["RunAttributesSpanProcessor", "ensure_run_processor"]


class RunAttributesSpanProcessor(SpanProcessor):
    """Sets `cognocient.run.id` at span start; keeps a value the span was started with.

    `on_start` runs on the thread that starts the span and only reads the context.
    """

    def on_start(self, span: Span, parent_context: context.Context | None = None) -> None:
        scope = span.instrumentation_scope
        if scope is not None and scope.name == INSTRUMENTATION_NAME:
            # Our own spans (runs, LLM calls) start with the run id when there is one, found
            # from the same run, header or baggage: nothing to add, and a cheaper test.
            return
        attributes = span.attributes
        if attributes is not None and sc.COGNOCIENT_RUN_ID in attributes:
            return
        run_id = run_id_from_context(parent_context)
        if run_id is not None:
            span.set_attribute(sc.COGNOCIENT_RUN_ID, run_id)

    def on_end(self, span: ReadableSpan) -> None:
        return None

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def ensure_run_processor(provider: object) -> bool:
    """Add the processor to an SDK `TracerProvider` that lacks it; True if it is there now."""
    if not isinstance(provider, TracerProvider):
        return False
    active = getattr(provider, "_active_span_processor", None)
    existing = getattr(active, "_span_processors", ())
    if any(isinstance(processor, RunAttributesSpanProcessor) for processor in existing):
        return True
    provider.add_span_processor(RunAttributesSpanProcessor())
    return True
