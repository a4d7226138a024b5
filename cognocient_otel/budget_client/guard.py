"""`RemoteBudgetGuard`: the collector's budgets, enforced before each LLM call leaves.

Before a call: if this run holds an allowance the call's estimate fits in, take it (no network).
Otherwise ask the collector, reserving the estimate under the call's span id and asking for an
allowance for the next calls; the old allowance of the run is closed and released once its calls
are done. After a call: queue its actual cost, reported with the next check (settlement), so the
collector counts it before the span is exported. When the run ends in this process
(`on_run_end`), its allowance is released: the release goes with the next check, or with the
background flush that the run's end wakes, so that other processes see the headroom again.
"""

from __future__ import annotations

import logging
import threading
from decimal import Decimal
from typing import TYPE_CHECKING

from cognocient_otel.budget.guard import ALLOW, BudgetGuard, GuardDecision, PlannedCall
from cognocient_otel.budget_client.allowance import Allowance
from cognocient_otel.budget_client.client import BudgetClient, BudgetDecision, PendingSettlement

if TYPE_CHECKING:
    from cognocient_otel.runs import Run

__all__ = ["RemoteBudgetGuard"]

logger = logging.getLogger(__name__)

_ZERO = Decimal(0)
_WARN = GuardDecision(kind="warn")


class RemoteBudgetGuard(BudgetGuard):
    """Consults the collector's budgets; see the module docstring.

    `allowance_calls`: how many more calls like this one to ask headroom for (0 turns allowances
    off: every call asks the collector). `flush_interval_seconds`: how often finished calls are
    reported when no check is made (0: only with checks and `flush()`); a run's end makes the
    loop report at once. The same loop releases allowances unused for `idle_release_seconds`:
    those of calls made outside any `run()` (tagged by header only), whose end nobody tells.
    """

    name = "remote"

    def __init__(
        self,
        client: BudgetClient,
        *,
        allowance_calls: int = 4,
        tenant: str = "",
        flush_interval_seconds: float = 1.0,
        idle_release_seconds: float = 2.0,
    ) -> None:
        if allowance_calls < 0:
            raise ValueError(f"allowance_calls: must be >= 0, got {allowance_calls}")
        self.client = client
        self.allowance_calls = allowance_calls
        self.tenant = tenant
        self.idle_release_seconds = idle_release_seconds
        self._allowances: dict[str, Allowance] = {}
        # span id -> (allowance or None, estimate): what after_call must settle.
        self._in_flight: dict[str, tuple[Allowance | None, str, Decimal]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._flush_now = threading.Event()
        self._flusher: threading.Thread | None = None
        if flush_interval_seconds > 0:
            self._flusher = threading.Thread(
                target=self._flush_loop,
                args=(flush_interval_seconds,),
                name="cognocient-budget-flush",
                daemon=True,
            )
            self._flusher.start()

    def before_call(self, call: PlannedCall) -> GuardDecision:
        run_id = call.run_id or f"call-{call.span_id}"  # no run: the call is its own run
        estimate = call.estimated_cost_usd
        allowance = self._allowances.get(run_id)
        if allowance is not None and allowance.take(estimate):
            self._in_flight[call.span_id] = (allowance, allowance.reservation_id, estimate)
            return ALLOW
        # This allowance could not cover the call: release it in the same request (if none of
        # its calls is still in flight), so the collector decides without it.
        self.forget_run(run_id)
        step = call.run.steps if call.run is not None else 0
        answer = self.client.check(
            run_id=run_id,
            feature=call.feature or "",
            agent=call.agent or "",
            tenant=self.tenant,
            estimated_cost_usd=estimate,
            span_id=call.span_id,
            step=step,
            allowance_usd=estimate * self.allowance_calls,
        )
        if answer.decision == "block":
            return _refusal(answer)
        granted = None
        if answer.allowance_usd > 0:
            granted = Allowance(answer.reservation_id, answer.allowance_usd, answer.reservation_ttl_seconds)
            granted.in_flight = 1  # this call
        with self._lock:
            previous = self._allowances.pop(run_id, None)
            if granted is not None:
                self._allowances[run_id] = granted
            if answer.reservation_id or granted is not None:
                self._in_flight[call.span_id] = (granted, answer.reservation_id, estimate)
        if previous is not None and previous.close():
            self._release(previous)  # another thread of the run was granted one meanwhile
        if answer.decision == "warn":
            return GuardDecision(
                kind="warn", limit_usd=answer.limit_usd, spent_usd=answer.committed_usd, reason=answer.reason
            )
        return ALLOW

    def after_call(self, call: PlannedCall, actual_cost_usd: Decimal) -> None:
        entry = self._in_flight.pop(call.span_id, None)
        if entry is None:
            return  # nothing was reserved (collector unreachable, or no budget applied)
        allowance, reservation_id, estimate = entry
        if reservation_id:  # else no budget applied: the span alone tells the collector
            self.client.report(PendingSettlement(call.span_id, actual_cost_usd, reservation_id, estimate))
        if allowance is not None and allowance.call_done(actual_cost_usd - estimate):
            self._release(allowance)

    def on_run_end(self, run: Run) -> None:
        """Release the run's allowance (after its last call in flight, if any is) and wake the
        background flush to send it: no network call on the application's path."""
        if self.forget_run(run.id):
            self._flush_now.set()

    def forget_run(self, run_id: str) -> bool:
        """The run ended in this process: release its allowance now rather than at expiry.

        True when a release was queued (False: no allowance, or its last call in flight will).
        """
        with self._lock:
            allowance = self._allowances.pop(run_id, None)
        if allowance is not None and allowance.close():
            self._release(allowance)
            return True
        return False

    def _release(self, allowance: Allowance) -> None:
        if allowance.reservation_id:
            self.client.release(allowance.reservation_id)

    def _flush_loop(self, interval: float) -> None:
        while True:
            self._flush_now.wait(interval)
            self._flush_now.clear()
            if self._stop.is_set():
                return
            try:
                # A run that ended here leaves its allowance reserved at the collector, where it
                # narrows shared windows for others: release allowances nobody used for a while.
                for run_id, allowance in list(self._allowances.items()):
                    if allowance.idle_for(self.idle_release_seconds):
                        self.forget_run(run_id)
                if self.client.has_pending():
                    self.client.flush()
            except Exception:  # never let the background reporter die
                logger.exception("budget settlements flush failed")

    def close(self) -> None:
        """Stop the background reporter and send what is queued."""
        self._stop.set()
        self._flush_now.set()
        if self._flusher is not None:
            self._flusher.join(timeout=5)
        for run_id in list(self._allowances):
            self.forget_run(run_id)
        self.client.flush()


def _refusal(answer: BudgetDecision) -> GuardDecision:
    return GuardDecision(
        kind="block",
        limit_usd=answer.limit_usd if answer.limit_usd is not None else _ZERO,
        spent_usd=answer.committed_usd if answer.committed_usd is not None else answer.run_spent_usd,
        reason=answer.reason,
    )
