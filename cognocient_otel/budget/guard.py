"""The budget guard interface the instrumentation consults before every LLM call.

The instrumentor keeps an ordered list of guards: the in-process per-run guard first, then any
the user adds (`instrument(guards=[...])`, e.g. a remote guard that asks the collector). For each
recognised LLM call it builds one `PlannedCall` and calls `before_call` on each guard in order,
then, once the call is over, `after_call` on every guard whose `before_call` returned. When a run
is over in this process, `on_run_end` tells every guard, so that what it holds for the run (a
remote guard's allowance) is given back at once.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from cognocient_otel.runs import Run

__all__ = ["ALLOW", "BudgetExceeded", "BudgetGuard", "GuardDecision", "PlannedCall", "sdk_compatible_refusal"]

DecisionKind = Literal["allow", "warn", "block"]


class BudgetExceeded(Exception):
    """An LLM call was refused before it was sent: it would have crossed a budget's limit.

    `run_id` is the run whose call was refused, `limit_usd` the limit that would be crossed,
    `spent_usd` what the scope had spent and reserved when the call was refused.
    """

    def __init__(
        self,
        *,
        run_id: str | None,
        limit_usd: Decimal,
        spent_usd: Decimal,
        estimate_usd: Decimal = Decimal(0),
        reason: str = "",
    ) -> None:
        self.run_id = run_id
        self.limit_usd = limit_usd
        self.spent_usd = spent_usd
        self.estimate_usd = estimate_usd
        self.reason = reason
        detail = f": {reason}" if reason else ""
        super().__init__(
            f"budget exceeded for run {run_id}: limit ${limit_usd}, spent and reserved ${spent_usd}, "
            f"this call estimated at ${estimate_usd}{detail}"
        )

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        # Keyword-only __init__: rebuild explicitly so it pickles across processes.
        return (_rebuild, (self.run_id, self.limit_usd, self.spent_usd, self.estimate_usd, self.reason))


def _rebuild(
    run_id: str | None, limit_usd: Decimal, spent_usd: Decimal, estimate_usd: Decimal, reason: str
) -> BudgetExceeded:
    return BudgetExceeded(
        run_id=run_id, limit_usd=limit_usd, spent_usd=spent_usd, estimate_usd=estimate_usd, reason=reason
    )


# The SDKs wrap any exception raised while sending that is not their own error type into a
# connection error, and retry it (openai 2.x retries `Exception`s; anthropic wraps them). A
# refusal raised from inside the HTTP client therefore also derives from the base error of every
# such SDK that is loaded: it reaches the caller as itself, at once, without retries.
_SDK_BASE_ERRORS = (("openai", "OpenAIError"), ("anthropic", "AnthropicError"))
_refusal_classes: dict[tuple[type, ...], type[BudgetExceeded]] = {}


def sdk_compatible_refusal(
    *, run_id: str | None, limit_usd: Decimal, spent_usd: Decimal, estimate_usd: Decimal, reason: str
) -> BudgetExceeded:
    """A `BudgetExceeded` that the loaded LLM SDKs let through unwrapped and unretried."""
    bases: list[type] = []
    for module_name, class_name in _SDK_BASE_ERRORS:
        module = sys.modules.get(module_name)
        base = getattr(module, class_name, None) if module is not None else None
        if isinstance(base, type) and issubclass(base, Exception):
            bases.append(base)
    key = tuple(bases)
    cls = _refusal_classes.get(key)
    if cls is None:
        cls = type("BudgetExceeded", (BudgetExceeded, *bases), {"__module__": __name__})
        _refusal_classes[key] = cls
    return cls(
        run_id=run_id, limit_usd=limit_usd, spent_usd=spent_usd, estimate_usd=estimate_usd, reason=reason
    )


@dataclass(slots=True)
class PlannedCall:
    """One LLM call about to be sent; built once per call, shared by all guards.

    `span_id` is the 16-hex-digit id of the call's span: a two-phase guard keys its reservation
    by it. `estimated_cost_usd` is the priced upper estimate of the call (input tokens estimated
    from the request, output tokens from its max-tokens field or the configured default); zero
    when the model has no known price. `run` is this process's `Run` when the call is made inside
    `cognocient_otel.run(...)`, else None (then `run_id` may still come from an `X-Cost-Run-ID`
    header). Guards must treat the object as read-only.
    """

    run_id: str | None
    feature: str | None
    agent: str | None
    span_id: str
    model: str
    provider: str | None
    operation: str
    estimated_input_tokens: int
    estimated_output_tokens: int
    estimated_cost_usd: Decimal
    run: Run | None = None


@dataclass(frozen=True, slots=True)
class GuardDecision:
    """A guard's answer. `allow` sends the call; `warn` sends it and records `warned` on the span;
    `block` refuses it (the instrumentor raises `BudgetExceeded` and nothing is sent).
    `limit_usd` / `spent_usd` describe the limit concerned (None when there is none)."""

    kind: DecisionKind = "allow"
    limit_usd: Decimal | None = None
    spent_usd: Decimal | None = None
    reason: str = ""

    @property
    def allowed(self) -> bool:
        return self.kind != "block"


ALLOW = GuardDecision()


class BudgetGuard:
    """Decides, before an LLM call leaves, whether it may; learns its real cost afterwards.

    Contract:
    * `before_call` runs on the thread (or in the asyncio task) that makes the call, before any
      byte is sent; it must be quick and must not block on I/O longer than the guard's own
      timeout. It returns a `GuardDecision`, or raises `BudgetExceeded` (same as a `block`).
      Any other exception is logged and treated as `allow`: a broken guard never breaks a call.
    * `after_call` is called exactly once for every call whose `before_call` returned `allow`
      or `warn` (also when a later guard blocked it, when the request failed, or when a stream
      was abandoned), on the thread or task that finished the call. `actual_cost_usd` is the
      call's cost; zero when nothing was sent or no answer came. When usage is unknown (a
      stream closed before the provider reported it) it is at least the call's estimate, so a
      reservation never turns into less than what may have been spent.
    * `on_run_end` is called once when the outermost `run()` of a run id in this process exits
      (after its root span ended; a nested sub-run's exit does not count, and when several
      outermost `run()`s of one id are open at once, the last one to exit does), on the thread
      or task that exits it. Calls of the run still in flight then (started on other threads)
      still get their `after_call`. It must be quick and must not block on I/O: it runs on the
      application's path. Exceptions are logged and ignored. Runs in other processes (a
      sub-agent that joined the run) end there, with their own guards.
    * All may be called concurrently from many threads and tasks: guards synchronise
      themselves. `call` and `run` belong to the instrumentation; guards keep only what they copy.
    """

    name = "noop"

    def before_call(self, call: PlannedCall) -> GuardDecision:
        return ALLOW

    def after_call(self, call: PlannedCall, actual_cost_usd: Decimal) -> None:
        return None

    def on_run_end(self, run: Run) -> None:
        return None
