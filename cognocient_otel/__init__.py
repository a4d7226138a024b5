"""Cognocient OTel, the agent side: runs, costed GenAI spans for LLM calls, per-run budgets.

import cognocient_otel
cognocient_otel.configure()        # OTLP/gRPC exporter to the collector
cognocient_otel.instrument()       # LLM calls through httpx / httpx2 become costed spans
with cognocient_otel.run("document-processor", budget_usd=0.50) as run:
    ...
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cognocient_otel.budget import BudgetExceeded, BudgetGuard, GuardDecision, PlannedCall
    from cognocient_otel.config import configure
    from cognocient_otel.instrumentor import CognocientInstrumentor
    from cognocient_otel.pricing import PriceOverride
    from cognocient_otel.remote_budget import check_budget
    from cognocient_otel.runs import Run, current_run, run

# The public names are imported on first use (PEP 562), so that importing one light submodule,
# `cognocient_otel.semconv` say (the collector's decode workers do), does not load the SDK,
# httpx and the genai-prices price tables with it.
_EXPORTED_FROM = {
    "BudgetExceeded": "cognocient_otel.budget",
    "BudgetGuard": "cognocient_otel.budget",
    "GuardDecision": "cognocient_otel.budget",
    "PlannedCall": "cognocient_otel.budget",
    "configure": "cognocient_otel.config",
    "CognocientInstrumentor": "cognocient_otel.instrumentor",
    "PriceOverride": "cognocient_otel.pricing",
    "check_budget": "cognocient_otel.remote_budget",
    "Run": "cognocient_otel.runs",
    "current_run": "cognocient_otel.runs",
    "run": "cognocient_otel.runs",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTED_FROM.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups are plain module attributes
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTED_FROM})

__all__ = [
    "BudgetExceeded",
    "BudgetGuard",
    "CognocientInstrumentor",
    "GuardDecision",
    "PlannedCall",
    "PriceOverride",
    "Run",
    "check_budget",
    "configure",
    "current_run",
    "instrument",
    "run",
    "uninstrument",
]


def instrument(**kwargs: Any) -> None:
    """Instrument httpx and httpx2 (see `CognocientInstrumentor` for the keyword arguments).

    Idempotent: a second call does nothing until `uninstrument()`.
    """
    from cognocient_otel.instrumentor import CognocientInstrumentor

    CognocientInstrumentor().instrument(**kwargs)


def uninstrument() -> None:
    """Undo `instrument()`: the HTTP clients send untraced again."""
    from cognocient_otel.instrumentor import CognocientInstrumentor

    CognocientInstrumentor().uninstrument()
