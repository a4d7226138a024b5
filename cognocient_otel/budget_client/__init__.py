"""The agent side of the collector's budget check (issue 4).

* `BudgetClient`: one gRPC channel to the collector's `BudgetService`, the failure policy, and the
  queue of finished calls to report with the next check;
* `RemoteBudgetGuard`: the `BudgetGuard` the instrumentation consults before each LLM call; it
  reserves the call's estimate at the collector, or spends it from an allowance the collector
  granted earlier (no round trip);
* `cognocient_otel.remote_budget.check_budget()`: the explicit check, inside a run or not.
"""

from cognocient_otel.budget_client.client import BudgetClient, BudgetDecision, FailurePolicy, resolve_endpoint
from cognocient_otel.budget_client.guard import RemoteBudgetGuard

__all__ = ["BudgetClient", "BudgetDecision", "FailurePolicy", "RemoteBudgetGuard", "resolve_endpoint"]
