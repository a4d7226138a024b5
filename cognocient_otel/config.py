"""`configure()`: a TracerProvider exporting over OTLP/gRPC, with run attribution, as the default."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from cognocient_otel import settings
from cognocient_otel.budget.guard import BudgetGuard
from cognocient_otel.processor import ensure_run_processor

__all__ = ["DEFAULT_ENDPOINT", "configure"]

DEFAULT_ENDPOINT = "http://127.0.0.1:4317"


def configure(
    endpoint: str | None = None,
    *,
    service_name: str | None = None,
    price_overrides: settings.PriceOverridesArg = None,
    headers: bool = True,
    providers: Mapping[str, str] | None = None,
    default_max_output_tokens: int = 1024,
    guards: Iterable[BudgetGuard] | None = None,
    tracer_provider: TracerProvider | None = None,
    budget_failure_policy: str | None = "fail_open",
) -> TracerProvider:
    """Set up tracing for an agent process and remember the defaults `instrument()` will use.

    `endpoint` is the collector's OTLP/gRPC address (else `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
    `OTEL_EXPORTER_OTLP_ENDPOINT`, or `http://127.0.0.1:4317`). A new SDK `TracerProvider`
    with a `BatchSpanProcessor` + OTLP exporter and the run-attribution span processor becomes
    the global provider; if an SDK provider is already global (or `tracer_provider` is given),
    the exporter and processor are added to it instead. Returns the provider.

    `price_overrides`: `{model: {"input": usd_per_mtok, "output": ..., "cache_read": ...,
    "cache_write": ...}}` or `PriceOverride` objects. `headers=False` stops adding
    `X-Cost-Run-ID` / `X-Cost-Feature` to LLM requests. `providers` maps `host[:port]` to a
    provider name. `default_max_output_tokens` is the output estimate of a call that sets no
    max-tokens field. `guards` are extra `BudgetGuard`s consulted after the per-run one.
    `budget_failure_policy`: the collector's budgets are checked before each LLM call at the same
    endpoint, `fail_open` or `fail_closed` when it cannot be reached; None turns the checks off.
    """
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    new_settings = settings.Settings(
        price_overrides=settings.parse_price_overrides(price_overrides),
        inject_headers=bool(headers),
        providers=dict(providers or {}),
        default_max_output_tokens=settings.validate_max_output_tokens(default_max_output_tokens),
        guards=settings.validate_guards(guards),
    )
    target = (
        endpoint
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or DEFAULT_ENDPOINT
    )
    if "://" not in target:
        raise ValueError(f"configure(endpoint={target!r}): give a URL such as http://127.0.0.1:4317")
    exporter = OTLPSpanExporter(endpoint=target, insecure=target.startswith("http://"))
    provider = tracer_provider
    if provider is None:
        current = trace.get_tracer_provider()
        if isinstance(current, TracerProvider):
            provider = current
        else:
            attributes = {SERVICE_NAME: service_name} if service_name else {}
            provider = TracerProvider(resource=Resource.create(attributes))
            trace.set_tracer_provider(provider)
    ensure_run_processor(provider)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    if budget_failure_policy is not None:  # issue 4: budget checks go to the same collector
        from cognocient_otel.remote_budget import configure_budget_client

        remote = configure_budget_client(target, failure_policy=budget_failure_policy)  # type: ignore[arg-type]
        new_settings.guards = (*new_settings.guards, remote)
    settings.replace_current(new_settings)
    return provider
