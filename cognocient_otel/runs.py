"""Agent runs: `run(...)` as context manager (sync and async) and decorator, and `current_run()`.

A run is a trace: `run()` opens the root span `invoke_agent {agent}`, puts the run id and
feature into W3C baggage (so processes reached over HTTP join the run) and keeps the `Run`
object in the OpenTelemetry context (so LLM calls find its ledger and step counter).

Nesting: a `run()` inside another run, without `run_id=`, is a sub-run of the same run. It keeps
the run id, inherits the feature unless given one, opens its own `invoke_agent` span under the
enclosing one, shares the step counter, and has its own ledger whose spend also counts in the
enclosing run's (a sub-run's `budget_usd` is an extra, inner limit). `run_id=` naming another id
starts an independent run. A `run()` with no enclosing run in this process but a run id in the
incoming baggage (a sub-agent called over HTTP) joins that run id.

End: when the outermost `run()` of a run id in this process exits (the last one, if several
are open at once), the instrumentation's budget guards are told (`BudgetGuard.on_run_end`), so
that what they hold for the run, such as a remote guard's allowance, is released at once.
"""

from __future__ import annotations

import functools
import inspect
import threading
import uuid
from collections.abc import Callable
from decimal import Decimal
from types import TracebackType
from typing import Any, Literal, TypeVar

from opentelemetry import baggage, context, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from cognocient_otel import _state
from cognocient_otel import semconv as sc
from cognocient_otel._failures import log_failure_once
from cognocient_otel.budget.ledger import RunLedger

__all__ = ["Run", "RunScope", "current_run", "run"]

Enforcement = Literal["block", "warn"]
F = TypeVar("F", bound=Callable[..., Any])

RUN_CONTEXT_KEY = context.create_key("cognocient-run")
# Baggage travels to other services: refuse absurd values rather than copying them into spans.
_MAX_BAGGAGE_VALUE_LENGTH = 256


class _StepCounter:
    """1-based index of LLM calls within a run in this process; shared by its sub-runs."""

    __slots__ = ("_lock", "value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def next(self) -> int:
        with self._lock:
            self.value += 1
            return self.value


class _OpenRuns:
    """How many outermost `run()`s of each run id are open in this process (usually one: the
    same id entered in two threads, or resumed inside another run, makes more)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def opened(self, run_id: str) -> None:
        with self._lock:
            self._counts[run_id] = self._counts.get(run_id, 0) + 1

    def closed(self, run_id: str) -> bool:
        """True when that was the last one: the run is over in this process."""
        with self._lock:
            left = self._counts.get(run_id, 1) - 1
            if left > 0:
                self._counts[run_id] = left
                return False
            self._counts.pop(run_id, None)
            return True


_open_runs = _OpenRuns()


def _tell_guards_run_ended(ended: Run) -> None:
    for guard in _state.guards():
        on_run_end = getattr(guard, "on_run_end", None)  # guards may predate the hook
        if on_run_end is None:
            continue
        try:
            on_run_end(ended)
        except Exception as exc:  # a broken guard never breaks the application's run
            log_failure_once(f"budget guard {type(guard).__name__}.on_run_end", exc)


class Run:
    """A run in progress in this process. Read its totals at any time, from any thread.

    `cost_usd` is the settled cost of the calls made in this run (and its sub-runs) so far;
    `remaining_usd` is `budget_usd` minus settled and reserved cost (None without a budget);
    `steps` counts the LLM calls started in the whole run (sub-runs included) in this process.
    """

    __slots__ = ("_steps", "agent", "budget_usd", "enforcement", "feature", "id", "ledger", "parent", "span")

    def __init__(
        self,
        *,
        run_id: str,
        agent: str,
        feature: str | None,
        budget_usd: Decimal | None,
        enforcement: Enforcement,
        parent: Run | None,
    ) -> None:
        self.id = run_id
        self.agent = agent
        self.feature = feature
        self.budget_usd = budget_usd
        self.enforcement = enforcement
        self.parent = parent
        self.ledger = RunLedger(
            budget_usd, blocks=enforcement == "block", parent=parent.ledger if parent is not None else None
        )
        self._steps = parent._steps if parent is not None else _StepCounter()
        self.span: trace.Span = trace.INVALID_SPAN

    @property
    def cost_usd(self) -> Decimal:
        return self.ledger.settled

    @property
    def steps(self) -> int:
        return self._steps.value

    @property
    def remaining_usd(self) -> Decimal | None:
        return self.ledger.remaining()

    @property
    def blocked(self) -> bool:
        return self.ledger.blocked

    def next_step(self) -> int:
        return self._steps.next()

    def check(self, estimated_cost_usd: float | Decimal | str = 0) -> Any:
        """Ask the collector's budgets about this run's next step (issue 4): returns the
        `BudgetDecision`, raises `BudgetExceeded` when it is `block`."""
        from cognocient_otel.remote_budget import check_budget, enforce

        decision = check_budget(
            estimated_cost_usd=estimated_cost_usd,
            run_id=self.id,
            feature=self.feature,
            agent=self.agent,
            step=self.steps + 1,
        )
        return enforce(decision, run_id=self.id, estimated_cost_usd=Decimal(str(estimated_cost_usd)))

    def __repr__(self) -> str:
        return (
            f"Run(id={self.id!r}, agent={self.agent!r}, feature={self.feature!r}, cost_usd={self.cost_usd}, "
            f"steps={self.steps}, budget_usd={self.budget_usd})"
        )


def current_run() -> Run | None:
    """The innermost run of the current context (thread or asyncio task), or None."""
    return context.get_value(RUN_CONTEXT_KEY)  # type: ignore[return-value]


def run_id_from_context(ctx: context.Context | None = None) -> str | None:
    """Run id of the given (or current) context: this process's run, else the incoming baggage."""
    active = context.get_value(RUN_CONTEXT_KEY, ctx)
    if active is not None:
        return active.id  # type: ignore[attr-defined]
    return _baggage_value(sc.BAGGAGE_RUN_ID, ctx)


def _baggage_value(key: str, ctx: context.Context | None = None) -> str | None:
    value = baggage.get_baggage(key, ctx)
    if isinstance(value, str) and 0 < len(value) <= _MAX_BAGGAGE_VALUE_LENGTH:
        return value
    return None


class RunScope:
    """What `run(...)` returns: enter it (`with`, `async with`) or decorate a function with it.

    Each entry starts a new `Run`; as a decorator every call of the function is one run.
    """

    def __init__(
        self,
        agent: str,
        *,
        feature: str | None,
        run_id: str | None,
        budget_usd: Decimal | None,
        enforcement: Enforcement,
    ) -> None:
        self._agent = agent
        self._feature = feature
        self._run_id = run_id
        self._budget_usd = budget_usd
        self._enforcement: Enforcement = enforcement
        self._entered: list[tuple[Run, object]] = []

    def _copy(self) -> RunScope:
        return RunScope(
            self._agent,
            feature=self._feature,
            run_id=self._run_id,
            budget_usd=self._budget_usd,
            enforcement=self._enforcement,
        )

    # --- context manager ----------------------------------------------------------------------
    def __enter__(self) -> Run:
        active = self._start()
        return active

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._finish(exc)

    async def __aenter__(self) -> Run:
        return self._start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._finish(exc)

    # --- decorator ----------------------------------------------------------------------------
    def __call__(self, func: F) -> F:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                async with self._copy():
                    return await func(*args, **kwargs)

            return run_async  # type: ignore[return-value]

        @functools.wraps(func)
        def run_sync(*args: Any, **kwargs: Any) -> Any:
            with self._copy():
                return func(*args, **kwargs)

        return run_sync  # type: ignore[return-value]

    # --- lifecycle ----------------------------------------------------------------------------
    def _start(self) -> Run:
        parent = current_run()
        if parent is not None and self._run_id in (None, parent.id):
            run_id, feature, parent_run = parent.id, self._feature or parent.feature, parent
        elif self._run_id is not None:
            run_id, feature, parent_run = self._run_id, self._feature, None
        else:
            joined = _baggage_value(sc.BAGGAGE_RUN_ID)
            run_id = joined or str(uuid.uuid4())
            feature = self._feature or (_baggage_value(sc.BAGGAGE_FEATURE) if joined else None)
            parent_run = None
        active = Run(
            run_id=run_id,
            agent=self._agent,
            feature=feature,
            budget_usd=self._budget_usd,
            enforcement=self._enforcement,
            parent=parent_run,
        )
        ctx = baggage.set_baggage(sc.BAGGAGE_RUN_ID, run_id)
        if feature:
            ctx = baggage.set_baggage(sc.BAGGAGE_FEATURE, feature, ctx)
        else:
            ctx = baggage.remove_baggage(sc.BAGGAGE_FEATURE, ctx)
        ctx = context.set_value(RUN_CONTEXT_KEY, active, ctx)
        attributes: dict[str, Any] = {
            sc.GEN_AI_OPERATION_NAME: sc.OPERATION_INVOKE_AGENT,
            sc.GEN_AI_AGENT_NAME: self._agent,
            sc.COGNOCIENT_RUN_ID: run_id,
        }
        if feature:
            attributes[sc.COGNOCIENT_FEATURE] = feature
        span = _state.tracer().start_span(
            f"{sc.AGENT_SPAN_NAME_PREFIX} {self._agent}",
            context=ctx,
            kind=SpanKind.INTERNAL,
            attributes=attributes,
        )
        active.span = span
        token = context.attach(trace.set_span_in_context(span, ctx))
        self._entered.append((active, token))
        if parent_run is None:
            _open_runs.opened(run_id)
        return active

    def _finish(self, exc: BaseException | None) -> None:
        active, token = self._entered.pop()
        span = active.span
        try:
            if exc is not None and span.is_recording():
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
                span.set_attribute(sc.ERROR_TYPE, type(exc).__qualname__)
        finally:
            try:
                span.end()
                context.detach(token)  # type: ignore[arg-type]
            finally:
                if active.parent is None and _open_runs.closed(active.id):
                    _tell_guards_run_ended(active)


def run(
    agent: str,
    *,
    feature: str | None = None,
    run_id: str | None = None,
    budget_usd: float | int | str | Decimal | None = None,
    enforcement: Enforcement = "block",
) -> RunScope:
    """One agent run: `with run("agent") as r:`, `async with run(...)`, or `@run("agent")`.

    `feature` is the budget scope value recorded on the run and its LLM calls; `run_id` resumes
    or joins a run (default: a fresh UUID4, or the enclosing run's id for a nested run);
    `budget_usd` is the run's own limit, enforced in this process before each LLM call leaves;
    `enforcement` is `"block"` (raise `BudgetExceeded`, send nothing) or `"warn"` (send and record).
    """
    if not isinstance(agent, str) or not agent.strip():
        raise ValueError(
            "run(agent): the agent name must be a non-empty string, e.g. run('document-processor')"
        )
    if enforcement not in ("block", "warn"):
        raise ValueError(f"run(enforcement={enforcement!r}): use 'block' or 'warn'")
    if run_id is not None and (not isinstance(run_id, str) or not run_id.strip()):
        raise ValueError("run(run_id=...): a run id must be a non-empty string (or None for a new one)")
    if feature is not None and not isinstance(feature, str):
        raise ValueError(f"run(feature={feature!r}): the feature must be a string")
    return RunScope(
        agent,
        feature=feature or None,
        run_id=run_id,
        budget_usd=_parse_budget(budget_usd),
        enforcement=enforcement,
    )


def _parse_budget(budget_usd: float | int | str | Decimal | None) -> Decimal | None:
    if budget_usd is None:
        return None
    if isinstance(budget_usd, bool):
        raise ValueError("run(budget_usd=...): give an amount in USD such as 0.50, not a boolean")
    try:
        value = Decimal(str(budget_usd))
    except ArithmeticError:
        value = Decimal("NaN")
    if not value.is_finite() or value < 0:
        raise ValueError(f"run(budget_usd={budget_usd!r}): the budget must be a non-negative amount in USD")
    return value
