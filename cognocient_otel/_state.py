"""What runs need from the instrumentation: its tracer (the instrumentor's, given
`tracer_provider=`, or the global one) and its budget guards (told when a run ends)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from opentelemetry import trace

if TYPE_CHECKING:
    from cognocient_otel.budget.guard import BudgetGuard

# The tracer name of every span this package starts.
INSTRUMENTATION_NAME = "cognocient_otel"
_tracer: trace.Tracer | None = None
_guards: tuple[BudgetGuard, ...] = ()


def set_tracer(tracer: trace.Tracer | None) -> None:
    global _tracer
    _tracer = tracer


def tracer() -> trace.Tracer:
    return _tracer if _tracer is not None else trace.get_tracer(INSTRUMENTATION_NAME)


def set_guards(guards: tuple[BudgetGuard, ...]) -> None:
    global _guards
    _guards = guards


def guards() -> tuple[BudgetGuard, ...]:
    """The guards of the current instrumentation (empty when not instrumented)."""
    return _guards
