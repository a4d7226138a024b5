"""Cognocient OTel, the agent side: runs, costed GenAI spans for LLM calls, per-run budgets.

import cognocient_otel
cognocient_otel.configure()        # OTLP/gRPC exporter to the collector
cognocient_otel.instrument()       # LLM calls through httpx / httpx2 become costed spans
with cognocient_otel.run("document-processor", budget_usd=0.50) as run:
    ...
"""

from __future__ import annotations

from typing import Any

from cognocient_otel.budget import BudgetExceeded, BudgetGuard, GuardDecision, PlannedCall
from cognocient_otel.config import configure
from cognocient_otel.instrumentor import CognocientInstrumentor
from cognocient_otel.pricing import PriceOverride
from cognocient_otel.remote_budget import check_budget
from cognocient_otel.runs import Run, current_run, run

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
    CognocientInstrumentor().instrument(**kwargs)


def uninstrument() -> None:
    """Undo `instrument()`: the HTTP clients send untraced again."""
    CognocientInstrumentor().uninstrument()
