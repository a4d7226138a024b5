"""One traced LLM call: span, run attribution, headers, budget guards, usage, cost.

`CallTracer.begin()` runs before the request is sent (inside the HTTP client's `send`): it
recognises the call, starts the `{operation} {model}` CLIENT span, tags the request, asks the
guards. The returned `LLMCall` is finished from the answer: at once for a read body, or by the
stream wrapper when the application has read (or closed) a streamed body.

Nothing here may break the application's call: every step is guarded, a failure is logged once
per place and the call goes on untraced. The one exception we raise on purpose is
`BudgetExceeded`, before anything was sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from cognocient_otel import semconv as sc
from cognocient_otel._failures import log_failure_once
from cognocient_otel.budget.guard import (
    BudgetExceeded,
    BudgetGuard,
    GuardDecision,
    PlannedCall,
    sdk_compatible_refusal,
)
from cognocient_otel.llm.headers import HeaderRunSteps, add_cost_headers, cost_headers
from cognocient_otel.llm.providers import ProviderResolver
from cognocient_otel.llm.requests import CACHE_WRITES_1H, LLMRequest, match_path, read_request
from cognocient_otel.llm.span_attributes import add_clean_attributes
from cognocient_otel.llm.usage import ResponseSummary
from cognocient_otel.pricing import ModelRate, PriceBook, consistent_counts
from cognocient_otel.runs import RUN_CONTEXT_KEY, Run, _baggage_value

__all__ = ["CallTracer", "LLMCall", "log_failure_once"]

_ZERO = Decimal(0)
_NOT_LOOKED_UP = object()


class CallTracer:
    """Per-instrumentation settings and the per-call hot path. Shared by all threads."""

    def __init__(
        self,
        *,
        tracer: trace.Tracer,
        price_book: PriceBook,
        guards: Sequence[BudgetGuard],
        inject_headers: bool = True,
        providers: ProviderResolver | None = None,
        default_max_output_tokens: int = 1024,
    ) -> None:
        self.tracer = tracer
        self.price_book = price_book
        self.guards = tuple(guards)
        self.inject_headers = inject_headers
        self.providers = providers or ProviderResolver()
        self.default_max_output_tokens = default_max_output_tokens
        self._header_steps = HeaderRunSteps()

    def begin(self, request: Any) -> LLMCall | None:
        """Before `send`: an `LLMCall` for an LLM request, else None (after propagating the run)."""
        url = request.url
        matched = match_path(url.path) if request.method == "POST" else None
        if matched is None:
            self._propagate_run(request)
            return None
        try:
            content = request.content
        except Exception:  # a streaming request body: not an LLM API call we can read
            return None
        llm_request = read_request(matched[0], matched[1], content)
        if llm_request is None:
            self._propagate_run(request)
            return None
        return self._start(request, llm_request, url)

    def _propagate_run(self, request: Any) -> None:
        """Inside a run, carry W3C trace context and baggage to the service called (a sub-agent)."""
        try:
            ctx = context.get_current()
            if (
                context.get_value(RUN_CONTEXT_KEY, ctx) is None
                and _baggage_value(sc.BAGGAGE_RUN_ID, ctx) is None
            ):
                return
            if "traceparent" not in request.headers:
                propagate.inject(request.headers, context=ctx)
        except Exception as exc:
            log_failure_once("propagating the run to an HTTP request", exc)

    def _start(self, request: Any, llm_request: LLMRequest, url: Any) -> LLMCall:
        headers = request.headers
        run: Run | None = context.get_value(RUN_CONTEXT_KEY)  # type: ignore[assignment]
        header_run_id, header_feature, tagged = cost_headers(headers)
        if run is not None:
            run_id: str | None = run.id
            feature = run.feature
            agent: str | None = run.agent
        else:
            run_id = header_run_id or _baggage_value(sc.BAGGAGE_RUN_ID)
            feature = header_feature or (_baggage_value(sc.BAGGAGE_FEATURE) if run_id else None)
            agent = None
        host, port = url.host, url.port  # properties that work each value out again when read
        known_provider = self.providers.resolve(host, port)
        provider = known_provider or llm_request.api_family
        model = llm_request.model
        attributes: dict[str, Any] = {
            sc.GEN_AI_OPERATION_NAME: llm_request.operation,
            sc.GEN_AI_PROVIDER_NAME: provider,
            sc.GEN_AI_REQUEST_MODEL: model,
            sc.SERVER_ADDRESS: host,
        }
        if port is not None:
            attributes[sc.SERVER_PORT] = port
        if llm_request.max_output_tokens is not None:
            attributes[sc.GEN_AI_REQUEST_MAX_TOKENS] = llm_request.max_output_tokens
        if llm_request.stream:
            attributes[sc.GEN_AI_REQUEST_STREAM] = True
        if run_id:
            # Set here, the span processor finds it present and skips its context lookup.
            attributes[sc.COGNOCIENT_RUN_ID] = run_id
        if feature:
            attributes[sc.COGNOCIENT_FEATURE] = feature
        if run is not None:
            attributes[sc.COGNOCIENT_STEP] = run.next_step()
        elif run_id:
            attributes[sc.COGNOCIENT_STEP] = self._header_steps.next(run_id)
        attributes[sc.COGNOCIENT_REQUEST_FINGERPRINT] = llm_request.fingerprint
        span = self.tracer.start_span(
            f"{llm_request.operation} {model}", kind=SpanKind.CLIENT, attributes=attributes
        )
        call = None
        try:
            # PriceBook tries this provider first, then the model name alone (self-hosted, proxies).
            call = LLMCall(self, span, llm_request, provider, run)
            # The guard first: nothing after it may let a call out unguarded by failing.
            if self._needs_planning(run):
                call.plan(run_id=run_id, feature=feature, agent=agent, provider=provider)
        except BudgetExceeded:
            raise
        except BaseException as exc:
            # The call goes out untraced (logged by the caller): no span left open, and what a
            # guard had reserved for it released.
            if call is not None:
                call.fail(exc)
            else:
                span.end()
            raise
        if self.inject_headers and run_id:
            try:
                add_cost_headers(
                    headers,
                    run_id if header_run_id is None else None,
                    feature if feature and header_feature is None else None,
                    replace=tagged,
                )
            except Exception as exc:  # the call goes out traced and guarded, without our headers
                log_failure_once("adding the X-Cost-* headers", exc)
        return call

    def _needs_planning(self, run: Run | None) -> bool:
        """Guards only act on a call with a limit in its run chain or when extra guards exist."""
        if len(self.guards) > 1:
            return True
        ledger = run.ledger if run is not None else None
        while ledger is not None:
            if ledger.limit is not None:
                return True
            ledger = ledger.parent
        return False


class LLMCall:
    """A call in flight. `finish()` is idempotent and never raises."""

    __slots__ = (
        "_done",
        "_passed_guards",
        "_request_rate",
        "context",
        "planned",
        "pricing_provider",
        "request",
        "run",
        "span",
        "tracer",
    )

    def __init__(
        self,
        tracer: CallTracer,
        span: trace.Span,
        request: LLMRequest,
        pricing_provider: str | None,
        run: Run | None,
    ) -> None:
        self.tracer = tracer
        self.span = span
        self.request = request
        self.pricing_provider = pricing_provider
        self.run = run
        self.context = trace.set_span_in_context(span)
        self.planned: PlannedCall | None = None
        self._passed_guards: list[BudgetGuard] = []
        self._done = False
        # The requested model's rate once looked up for the estimate: most answers name it again.
        self._request_rate: ModelRate | object | None = _NOT_LOOKED_UP

    # --- before sending -----------------------------------------------------------------------
    def plan(self, *, run_id: str | None, feature: str | None, agent: str | None, provider: str) -> None:
        """Estimate the call and ask every guard; raises `BudgetExceeded` if one blocks it."""
        tracer = self.tracer
        request = self.request
        input_estimate = request.estimated_input_tokens()
        output_estimate = (
            0
            if request.operation == sc.OPERATION_EMBEDDINGS
            else (request.max_output_tokens or tracer.default_max_output_tokens) * request.choices
        )
        rate = tracer.price_book.rate(model=request.model, provider=self.pricing_provider)
        self._request_rate = rate
        if rate is None:
            estimate = _ZERO
        elif not request.cache_writes:
            estimate = rate.cost_of(input_estimate, output_estimate)
        elif request.cache_writes == CACHE_WRITES_1H:  # billed at twice the input rate
            estimate = rate.cost_of(2 * input_estimate, output_estimate)
        else:  # the worst case: every input token written to the cache (5-minute writes)
            estimate = rate.cost_of(input_estimate, output_estimate, 0, input_estimate)
        # Positional (field order of PlannedCall): keyword arguments cost twice as much here.
        self.planned = planned = PlannedCall(
            run_id,
            feature,
            agent,
            self.span.get_span_context().span_id.to_bytes(8, "big").hex(),
            request.model,
            provider,
            request.operation,
            input_estimate,
            output_estimate,
            estimate,
            self.run,
        )
        for guard in tracer.guards:
            try:
                decision = guard.before_call(planned)
            except BudgetExceeded as exceeded:
                decision = GuardDecision(
                    kind="block",
                    limit_usd=exceeded.limit_usd,
                    spent_usd=exceeded.spent_usd,
                    reason=exceeded.reason,
                )
            except Exception as exc:
                log_failure_once(f"budget guard {type(guard).__name__}.before_call", exc)
                continue
            if decision.kind == "block":
                self._refuse(guard, decision)
            self._passed_guards.append(guard)
            if decision.kind == "warn":
                self._record_budget_event(guard, decision, sc.BUDGET_DECISION_WARNED)

    def _record_budget_event(self, guard: BudgetGuard, decision: GuardDecision, outcome: str) -> None:
        span = self.span
        if not span.is_recording():
            return
        planned = self.planned
        span.set_attribute(sc.COGNOCIENT_BUDGET_DECISION, outcome)
        event: dict[str, Any] = {
            sc.BUDGET_EVENT_GUARD: getattr(guard, "name", type(guard).__name__),
            sc.BUDGET_EVENT_ESTIMATE_USD: float(planned.estimated_cost_usd) if planned else 0.0,
        }
        if decision.limit_usd is not None:
            event[sc.BUDGET_EVENT_LIMIT_USD] = float(decision.limit_usd)
        if decision.spent_usd is not None:
            event[sc.BUDGET_EVENT_SPENT_USD] = float(decision.spent_usd)
        span.add_event(sc.BUDGET_EXCEEDED_EVENT, event)

    def _refuse(self, guard: BudgetGuard, decision: GuardDecision) -> None:
        planned = self.planned
        assert planned is not None
        exceeded = sdk_compatible_refusal(
            run_id=planned.run_id,
            limit_usd=decision.limit_usd if decision.limit_usd is not None else _ZERO,
            spent_usd=decision.spent_usd if decision.spent_usd is not None else _ZERO,
            estimate_usd=planned.estimated_cost_usd,
            reason=decision.reason,
        )
        span = self.span
        try:
            self._record_budget_event(guard, decision, sc.BUDGET_DECISION_BLOCKED)
            if span.is_recording():
                span.set_attribute(sc.ERROR_TYPE, "BudgetExceeded")
                span.set_attribute(sc.COGNOCIENT_COST_USD, 0.0)
                span.set_attribute(sc.COGNOCIENT_COST_SOURCE, sc.COST_SOURCE_PRICE_TABLE)
                span.set_status(Status(StatusCode.ERROR, str(exceeded)))
        finally:
            self._done = True
            self._settle(_ZERO)
            span.end()
        raise exceeded

    # --- after the answer ---------------------------------------------------------------------
    def fail(self, exc: BaseException) -> None:
        """The request raised (connection error, timeout, cancellation): nothing to cost."""
        if self._done:
            return
        self._done = True
        span = self.span
        try:
            if span.is_recording():
                span.set_attribute(sc.ERROR_TYPE, type(exc).__qualname__)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
                span.record_exception(exc)
                span.set_attribute(sc.COGNOCIENT_COST_USD, 0.0)
                span.set_attribute(sc.COGNOCIENT_COST_SOURCE, sc.COST_SOURCE_PRICE_TABLE)
        except Exception as own:
            log_failure_once("recording a failed LLM request", own)
        finally:
            self._settle(_ZERO)
            span.end()

    def finish(self, summary: ResponseSummary | None, *, status_code: int, streamed: bool) -> None:
        """Record the answer and its cost, settle the guards, end the span."""
        if self._done:
            return
        self._done = True
        actual = _ZERO
        span = self.span
        try:
            actual = self._record(summary, status_code=status_code, streamed=streamed)
        except Exception as exc:
            log_failure_once("recording an LLM answer", exc)
        finally:
            self._settle(actual)
            span.end()

    def _record(self, summary: ResponseSummary | None, *, status_code: int, streamed: bool) -> Decimal:
        span = self.span
        planned = self.planned
        estimate = planned.estimated_cost_usd if planned is not None else _ZERO
        if status_code >= 400:
            if span.is_recording():
                # Providers do not bill refused requests: the span still carries its (zero) cost.
                span.set_attribute(sc.ERROR_TYPE, str(status_code))
                span.set_status(Status(StatusCode.ERROR, f"HTTP {status_code}"))
                span.set_attribute(sc.COGNOCIENT_COST_USD, 0.0)
                span.set_attribute(sc.COGNOCIENT_COST_SOURCE, sc.COST_SOURCE_PRICE_TABLE)
            return _ZERO
        if summary is None:
            summary = ResponseSummary()
        cache_read = summary.cache_read_tokens
        cache_write = summary.cache_creation_tokens
        reasoning = summary.reasoning_tokens
        input_tokens, output_tokens = consistent_counts(
            summary.input_tokens, summary.output_tokens, cache_read, cache_write, reasoning
        )
        if summary.provider_cost_usd is not None:
            cost, source = summary.provider_cost_usd, sc.COST_SOURCE_PROVIDER
        else:
            rate = self._answer_rate(summary.response_model)
            if rate is None:
                cost, source = _ZERO, sc.COST_SOURCE_UNKNOWN_MODEL
            else:
                cost = rate.cost_of(input_tokens, output_tokens, cache_read, cache_write, reasoning)
                source = sc.COST_SOURCE_PRICE_TABLE
        if span.is_recording():
            # Values as the SDK stores them (a tuple, not a list): no cleaning needed.
            answer: dict[str, Any] = {
                sc.GEN_AI_USAGE_INPUT_TOKENS: input_tokens,
                sc.GEN_AI_USAGE_OUTPUT_TOKENS: output_tokens,
                sc.COGNOCIENT_COST_USD: float(cost),
                sc.COGNOCIENT_COST_SOURCE: source,
            }
            if streamed or not summary.usage_complete:
                # Said on every stream; on a read body only when the usage was missing.
                answer[sc.COGNOCIENT_USAGE_COMPLETE] = summary.usage_complete
            if summary.response_model:
                answer[sc.GEN_AI_RESPONSE_MODEL] = summary.response_model
            if summary.response_id:
                answer[sc.GEN_AI_RESPONSE_ID] = summary.response_id
            if summary.finish_reasons:
                answer[sc.GEN_AI_RESPONSE_FINISH_REASONS] = tuple(summary.finish_reasons)
            if cache_read:
                answer[sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = cache_read
            if cache_write:
                answer[sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] = cache_write
            if reasoning:
                answer[sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] = reasoning
            if summary.error_type:
                answer[sc.ERROR_TYPE] = summary.error_type
                span.set_status(Status(StatusCode.ERROR, summary.error_type))
            add_clean_attributes(span, answer)
        if not summary.usage_complete:
            # Usage unknown (stream cut short): settle at least the reservation, never less.
            return max(cost, estimate)
        return cost

    def _answer_rate(self, response_model: str | None) -> ModelRate | None:
        """The rate of the model that answered (the requested one when the answer names none)."""
        model = response_model or self.request.model
        if model == self.request.model and self._request_rate is not _NOT_LOOKED_UP:
            return self._request_rate  # type: ignore[return-value]
        return self.tracer.price_book.rate(model=model, provider=self.pricing_provider)

    def _settle(self, actual: Decimal) -> None:
        planned = self.planned
        if planned is None:
            # Not planned (no limit, no extra guard): the run's spend is still recorded.
            if self.run is not None:
                self.run.ledger.settle(_ZERO, actual)
            return
        for guard in self._passed_guards:
            try:
                guard.after_call(planned, actual)
            except Exception as exc:
                log_failure_once(f"budget guard {type(guard).__name__}.after_call", exc)
        self._passed_guards = []
