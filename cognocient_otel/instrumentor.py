"""`CognocientInstrumentor`: the `opentelemetry_instrumentor` entry point.

    CognocientInstrumentor().instrument(tracer_provider=provider, guards=[...])

Keyword arguments of `instrument()` (all optional; unset ones come from `configure()`):
`tracer_provider`, `price_overrides`, `headers` (send `X-Cost-Run-ID`/`X-Cost-Feature`, default
True), `providers` (`{"host[:port]": "provider name"}`), `default_max_output_tokens` (output
estimate for calls without a max-tokens field, default 1024), `guards` (extra `BudgetGuard`s,
consulted after the in-process per-run guard).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

from cognocient_otel import _state, httpx_patch, settings
from cognocient_otel.budget.run_guard import RunBudgetGuard
from cognocient_otel.llm.call import CallTracer
from cognocient_otel.llm.providers import ProviderResolver
from cognocient_otel.pricing import PriceBook
from cognocient_otel.processor import ensure_run_processor

__all__ = ["CognocientInstrumentor"]

_VERSION = "0.1.0"


class CognocientInstrumentor(BaseInstrumentor):
    """Traces LLM calls made through httpx and httpx2 with cost, run attribution and budgets."""

    def instrumentation_dependencies(self) -> Collection[str]:
        # httpx or httpx2, whichever is installed: neither is required on its own.
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        defaults = settings.current()
        tracer_provider = kwargs.get("tracer_provider")
        overrides = (
            settings.parse_price_overrides(kwargs["price_overrides"])
            if kwargs.get("price_overrides") is not None
            else defaults.price_overrides
        )
        extra_guards = (
            settings.validate_guards(kwargs["guards"])
            if kwargs.get("guards") is not None
            else defaults.guards
        )
        providers = dict(defaults.providers)
        providers.update(kwargs.get("providers") or {})
        inject_headers = kwargs.get("headers", defaults.inject_headers)
        max_output = settings.validate_max_output_tokens(
            kwargs.get("default_max_output_tokens", defaults.default_max_output_tokens)
        )
        ensure_run_processor(tracer_provider if tracer_provider is not None else trace.get_tracer_provider())
        tracer = trace.get_tracer(_state.INSTRUMENTATION_NAME, _VERSION, tracer_provider)
        _state.set_tracer(tracer)
        guards = (RunBudgetGuard(), *extra_guards)
        _state.set_guards(guards)
        httpx_patch.install(
            CallTracer(
                tracer=tracer,
                price_book=PriceBook(overrides),
                guards=guards,
                inject_headers=bool(inject_headers),
                providers=ProviderResolver(providers),
                default_max_output_tokens=max_output,
            )
        )

    def _uninstrument(self, **kwargs: Any) -> None:
        httpx_patch.uninstall()
        _state.set_tracer(None)
        _state.set_guards(())
