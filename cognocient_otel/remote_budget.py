"""`check_budget()`: ask the collector whether the next step of a run may go ahead.

    import cognocient_otel
    cognocient_otel.configure(endpoint="http://127.0.0.1:4317")   # or OTEL_EXPORTER_OTLP_ENDPOINT
    with cognocient_otel.run(agent="summariser", feature="document-processor") as run:
        decision = cognocient_otel.check_budget(estimated_cost_usd=0.02)
        run.check()          # raises BudgetExceeded when the collector says block

Inside a run the run id, feature and agent come from the current run; outside, pass them.
The client is the process-wide one set by `configure_budget_client()` (called by
`cognocient_otel.configure(endpoint=...)`), else one made on first use from
OTEL_EXPORTER_OTLP_ENDPOINT with the default policy (fail_open).
"""

from __future__ import annotations

import threading
from decimal import Decimal

from cognocient_otel.budget.guard import BudgetExceeded
from cognocient_otel.budget_client import BudgetClient, BudgetDecision, FailurePolicy, RemoteBudgetGuard

__all__ = ["check_budget", "configure_budget_client", "default_budget_client", "enforce", "remote_guard"]

_lock = threading.Lock()
_client: BudgetClient | None = None
_guard: RemoteBudgetGuard | None = None


def configure_budget_client(
    endpoint: str | None = None,
    *,
    failure_policy: FailurePolicy = "fail_open",
    timeout_seconds: float = 0.25,
    tenant: str = "",
    allowance_calls: int = 4,
) -> RemoteBudgetGuard:
    """Point budget checks at the collector; returns the guard to give the instrumentation."""
    global _client, _guard
    client = BudgetClient(
        endpoint, timeout_seconds=timeout_seconds, failure_policy=failure_policy, tenant=tenant
    )
    guard = RemoteBudgetGuard(client, allowance_calls=allowance_calls, tenant=tenant)
    with _lock:
        old_client, old_guard = _client, _guard
        _client, _guard = client, guard
    if old_guard is not None:
        old_guard.close()
    if old_client is not None:
        old_client.close()
    return guard


def default_budget_client() -> BudgetClient:
    global _client
    with _lock:
        if _client is None:
            _client = BudgetClient()
        return _client


def remote_guard() -> RemoteBudgetGuard | None:
    """The guard made by `configure_budget_client`, if any."""
    return _guard


def check_budget(
    *,
    estimated_cost_usd: float | Decimal | str = 0,
    run_id: str | None = None,
    feature: str | None = None,
    agent: str | None = None,
    tenant: str = "",
    step: int | None = None,
) -> BudgetDecision:
    """The collector's decision for the next step; reserves nothing (the LLM calls reserve)."""
    from cognocient_otel.runs import current_run

    estimate = Decimal(str(estimated_cost_usd))
    if not estimate.is_finite() or estimate < 0:
        raise ValueError(f"estimated_cost_usd: must be a finite amount >= 0, got {estimated_cost_usd!r}")
    run = current_run()
    if run is not None:
        run_id = run_id or run.id
        feature = feature if feature is not None else run.feature
        agent = agent if agent is not None else run.agent
        step = step if step is not None else run.steps + 1
    if not run_id:
        raise ValueError("check_budget(): call it inside cognocient_otel.run(...) or pass run_id=")
    return default_budget_client().check(
        run_id=run_id,
        feature=feature or "",
        agent=agent or "",
        tenant=tenant,
        estimated_cost_usd=estimate,
        step=step or 0,
    )


def enforce(
    decision: BudgetDecision, *, run_id: str | None, estimated_cost_usd: Decimal = Decimal(0)
) -> BudgetDecision:
    """Raise `BudgetExceeded` if `decision` is a block; else return it."""
    if decision.decision == "block":
        raise BudgetExceeded(
            run_id=run_id,
            limit_usd=decision.limit_usd or Decimal(0),
            spent_usd=decision.committed_usd
            if decision.committed_usd is not None
            else decision.run_spent_usd,
            estimate_usd=estimated_cost_usd,
            reason=decision.reason,
        )
    return decision
