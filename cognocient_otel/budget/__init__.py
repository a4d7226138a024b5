"""Budget guards consulted before every LLM call, and the in-process per-run ledger."""

from cognocient_otel.budget.guard import ALLOW, BudgetExceeded, BudgetGuard, GuardDecision, PlannedCall
from cognocient_otel.budget.ledger import RunLedger
from cognocient_otel.budget.run_guard import RunBudgetGuard

__all__ = [
    "ALLOW",
    "BudgetExceeded",
    "BudgetGuard",
    "GuardDecision",
    "PlannedCall",
    "RunBudgetGuard",
    "RunLedger",
]
