"""The in-process per-run guard: a run's own `budget_usd`, enforced before the request leaves."""

from __future__ import annotations

from decimal import Decimal

from cognocient_otel.budget.guard import ALLOW, BudgetGuard, GuardDecision, PlannedCall

__all__ = ["RunBudgetGuard"]


class RunBudgetGuard(BudgetGuard):
    """Reserves each call's estimate in its run's ledger; refuses it if a limit would be crossed.

    Calls outside a `run(...)` (or in a run without `budget_usd`, at any nesting level) are
    allowed. Runs are independent: one run's spend never affects another's decision.
    """

    name = "run"

    def before_call(self, call: PlannedCall) -> GuardDecision:
        run = call.run
        if run is None:
            return ALLOW
        outcome = run.ledger.try_reserve(call.estimated_cost_usd)
        if outcome is None:
            return ALLOW
        return GuardDecision(
            kind="block" if outcome.blocked else "warn",
            limit_usd=outcome.limit,
            spent_usd=outcome.committed,
            reason="the run's budget_usd would be exceeded",
        )

    def after_call(self, call: PlannedCall, actual_cost_usd: Decimal) -> None:
        if call.run is not None:
            call.run.ledger.settle(call.estimated_cost_usd, actual_cost_usd)
