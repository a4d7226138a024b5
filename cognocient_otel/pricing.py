"""Prices of LLM calls: `genai-prices` data, resolved once per model, plus user overrides.

`genai_prices.calc_price` costs about 0.1 ms a call (model lookup plus a generic unit
decomposition), which is as much as the whole instrumented call may add. So a `PriceBook`
resolves each (provider, model) once and keeps a `ModelRate`:

* flat prices are linear in the token counts, so the rate is five Decimal coefficients and a
  constant (a per-request fee), obtained by evaluating the library's own `ModelPrice.calc_price`
  at probe points; `tests/test_pricing.py` checks the result equals `calc_price` exactly;
* tiered prices (the rate changes past an input-token threshold) are not linear: those models
  keep calling the library's arithmetic on the resolved `ModelPrice`, skipping only the lookup.

Money is `Decimal` throughout; callers convert to float at the edge (span attribute, metric).
A `PriceBook` is safe to share between threads: its cache only ever gains complete entries.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Literal

from genai_prices import Usage
from genai_prices.data_snapshot import get_snapshot
from genai_prices.types import ModelPrice, TieredPrices

__all__ = [
    "CostResult",
    "CostSource",
    "ModelRate",
    "PriceBook",
    "PriceOverride",
    "TokenUsage",
    "consistent_counts",
    "normalize_provider",
]

logger = logging.getLogger(__name__)

CostSource = Literal["provider", "price_table", "unknown_model"]

_MTOK = Decimal(1_000_000)
_ZERO = Decimal(0)
# Conditional prices in genai-prices change at points in time (a model's price cut, say):
# a resolved rate is looked up again after this many seconds.
_RATE_TTL_SECONDS = 3600.0

# OpenTelemetry GenAI `gen_ai.provider.name` values whose genai-prices id differs.
_SEMCONV_TO_GENAI_PRICES = {
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "gemini": "google",
    "vertex_ai": "google",
    "aws.bedrock": "aws",
    "azure.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "az.ai.openai": "azure",
    "az.ai.inference": "azure",
    "x_ai": "x-ai",
    "xai": "x-ai",
    "mistral_ai": "mistral",
    "mistralai": "mistral",
    "moonshot": "moonshotai",
}


def normalize_provider(provider: str | None) -> str | None:
    """Map an OpenTelemetry `gen_ai.provider.name` (or old `gen_ai.system`) to a genai-prices id."""
    if not provider:
        return None
    lowered = provider.lower()
    return _SEMCONV_TO_GENAI_PRICES.get(lowered, lowered)


def consistent_counts(
    input_tokens: int,
    output_tokens: int,
    cache_read_tokens: int,
    cache_write_tokens: int,
    reasoning_tokens: int,
) -> tuple[int, int]:
    """(input, output) totals that contain their parts (see `TokenUsage.consistent`)."""
    cached = cache_read_tokens + cache_write_tokens
    if cached > input_tokens:
        input_tokens += cached
    return input_tokens, output_tokens if output_tokens >= reasoning_tokens else reasoning_tokens


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Token counts of one LLM call, in the OpenTelemetry GenAI convention.

    `input_tokens` includes cache reads and writes; `output_tokens` includes reasoning tokens.
    Zero means "none reported".
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    def consistent(self) -> TokenUsage:
        """Return usage whose parts fit inside their totals.

        Some sources (Anthropic's API, instrumentations that copy it) report input tokens
        *excluding* the cached ones; their cache counts then exceed the input. Those are
        read as exclusive and added in, rather than refused.
        """
        input_tokens, output_tokens = consistent_counts(
            self.input_tokens, self.output_tokens, self.cache_read_tokens, self.cache_write_tokens,
            self.reasoning_tokens,
        )
        if input_tokens == self.input_tokens and output_tokens == self.output_tokens:
            return self
        return TokenUsage(input_tokens, output_tokens, self.cache_read_tokens, self.cache_write_tokens,
                          self.reasoning_tokens)

    def as_genai_prices(self) -> Usage:
        return Usage(
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cache_read_tokens=self.cache_read_tokens or None,
            cache_write_tokens=self.cache_write_tokens or None,
            output_reasoning_tokens=self.reasoning_tokens or None,
        )


@dataclass(frozen=True, slots=True)
class PriceOverride:
    """A user's own price for a model (negotiated rate, fine-tune, self-hosted), USD per million tokens.

    Cache reads and writes not given are charged at the input rate. `model` matches the model
    name case-insensitively; `provider`, when given, restricts the override to that provider.
    """

    model: str
    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cache_read_per_mtok: Decimal | None = None
    cache_write_per_mtok: Decimal | None = None
    provider: str | None = None

    def __post_init__(self) -> None:
        for name in ("input_per_mtok", "output_per_mtok", "cache_read_per_mtok", "cache_write_per_mtok"):
            value = getattr(self, name)
            if value is None:
                continue
            value = Decimal(str(value))
            if not value.is_finite() or value < 0:
                raise ValueError(f"price override for {self.model!r}: {name} must be a non-negative number")
            object.__setattr__(self, name, value)


@dataclass(frozen=True, slots=True)
class CostResult:
    """What one call cost. `model_id` is the priced model's canonical id (None when unknown)."""

    usd: Decimal
    source: CostSource
    model_id: str | None = None


@dataclass(frozen=True, slots=True)
class _LinearRate:
    """cost = per_request + sum(coefficient * count); exact for flat (untiered) prices."""

    model_id: str
    per_request: Decimal
    input: Decimal
    output: Decimal
    cache_read_extra: Decimal
    cache_write_extra: Decimal
    reasoning_extra: Decimal
    expires_at: float

    def cost(self, usage: TokenUsage) -> Decimal:
        return self.cost_of(
            usage.input_tokens, usage.output_tokens, usage.cache_read_tokens, usage.cache_write_tokens,
            usage.reasoning_tokens,
        )

    def cost_of(
        self,
        input_tokens: int,
        output_tokens: int,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
        reasoning_tokens: int = 0,
    ) -> Decimal:
        """Cost of counts that are already consistent (`consistent_counts`)."""
        total = self.per_request
        if input_tokens:
            total += self.input * input_tokens
        if output_tokens:
            total += self.output * output_tokens
        if cache_read_tokens and self.cache_read_extra:
            total += self.cache_read_extra * cache_read_tokens
        if cache_write_tokens and self.cache_write_extra:
            total += self.cache_write_extra * cache_write_tokens
        if reasoning_tokens and self.reasoning_extra:
            total += self.reasoning_extra * reasoning_tokens
        return total


@dataclass(frozen=True, slots=True)
class _LibraryRate:
    """Tiered prices: the library's arithmetic on the already resolved `ModelPrice`."""

    model_id: str
    model_price: ModelPrice
    expires_at: float

    def cost(self, usage: TokenUsage) -> Decimal:
        return self.model_price.calc_price(usage.as_genai_prices())["total_price"]

    def cost_of(self, *counts: int) -> Decimal:
        """Same arguments as `_LinearRate.cost_of` (input, output, cache read, cache write, reasoning)."""
        return self.cost(TokenUsage(*counts))


_Rate = _LinearRate | _LibraryRate
# What `PriceBook.rate` returns: `cost_of(input, output, cache_read, cache_write, reasoning)`.
ModelRate = _Rate


def _linear_rate(model_id: str, model_price: ModelPrice, expires_at: float) -> _Rate:
    if any(isinstance(value, TieredPrices) for value in model_price.__dict__.values()):
        return _LibraryRate(model_id, model_price, expires_at)

    def price(**counts: int) -> Decimal:
        return model_price.calc_price(TokenUsage(**counts).as_genai_prices())["total_price"]

    million = int(_MTOK)
    base = price()
    with_input = price(input_tokens=million)
    with_output = price(output_tokens=million)
    return _LinearRate(
        model_id=model_id,
        per_request=base,
        input=(with_input - base) / _MTOK,
        output=(with_output - base) / _MTOK,
        cache_read_extra=(price(input_tokens=million, cache_read_tokens=million) - with_input) / _MTOK,
        cache_write_extra=(price(input_tokens=million, cache_write_tokens=million) - with_input) / _MTOK,
        reasoning_extra=(price(output_tokens=million, reasoning_tokens=million) - with_output) / _MTOK,
        expires_at=expires_at,
    )


def _override_rate(override: PriceOverride) -> _LinearRate:
    per_token = override.input_per_mtok / _MTOK
    cache_read = override.cache_read_per_mtok
    cache_write = override.cache_write_per_mtok
    return _LinearRate(
        model_id=override.model,
        per_request=_ZERO,
        input=per_token,
        output=override.output_per_mtok / _MTOK,
        cache_read_extra=_ZERO if cache_read is None else cache_read / _MTOK - per_token,
        cache_write_extra=_ZERO if cache_write is None else cache_write / _MTOK - per_token,
        reasoning_extra=_ZERO,
        expires_at=float("inf"),
    )


class PriceBook:
    """Costs LLM calls from `genai-prices` data and the user's overrides.

    `cost()` never raises for an unknown model or provider: it returns a zero cost with
    source `unknown_model` and logs a warning once per model.
    """

    def __init__(
        self,
        overrides: Iterable[PriceOverride] = (),
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._overrides: dict[tuple[str | None, str], _LinearRate] = {}
        for override in overrides:
            key = (normalize_provider(override.provider), override.model.lower())
            self._overrides[key] = _override_rate(override)
        self._rates: dict[tuple[str | None, str | None, str], _Rate | None] = {}
        # `rate()`'s cache, keyed by the names as the caller has them (no normalising per call).
        self._named_rates: dict[tuple[str | None, str | None], _Rate | None] = {}
        self._warned_unknown: set[str] = set()
        self._monotonic = monotonic

    def cost(
        self,
        *,
        model: str | None,
        usage: TokenUsage,
        provider: str | None = None,
        api_url: str | None = None,
    ) -> CostResult:
        """Cost of one call of `model` (the model that answered) with `usage`.

        `provider` is an OpenTelemetry provider name or a genai-prices id; `api_url` the base
        URL the call went to. Either helps pick the right price list; without them (or when
        they name nothing genai-prices knows) the model name alone decides.
        """
        if not model:
            return self._unknown("<no model>")
        usage = usage.consistent()
        provider_id = normalize_provider(provider)
        rate = self._rate(model, provider_id, api_url)
        if rate is None:
            return self._unknown(model)
        return CostResult(rate.cost(usage), "price_table", rate.model_id)

    def rate(self, *, model: str | None, provider: str | None = None) -> ModelRate | None:
        """The resolved rate of `model`, for callers that cost many calls (the per-call path).

        `rate(...).cost_of(input, output, cache_read, cache_write, reasoning)` equals
        `cost(...).usd` for the same counts once made consistent (`consistent_counts`); no
        `TokenUsage` or `CostResult` is built. None for an unknown model, with the same
        once-per-model warning as `cost()`.
        """
        key = (provider, model)
        cached = self._named_rates.get(key, _MISSING)
        if cached is not _MISSING and (cached is None or cached.expires_at > self._monotonic()):
            return cached
        rate = self._rate(model, normalize_provider(provider), None) if model else None
        if rate is None:
            self._unknown(model or "<no model>")
        self._named_rates[key] = rate
        return rate

    def knows(self, *, model: str, provider: str | None = None) -> bool:
        return self._rate(model, normalize_provider(provider), None) is not None

    def _rate(self, model: str, provider_id: str | None, api_url: str | None) -> _Rate | None:
        key = (provider_id, api_url, model)
        cached = self._rates.get(key, _MISSING)
        if cached is not _MISSING and (cached is None or cached.expires_at > self._monotonic()):
            return cached
        rate = self._resolve(model, provider_id, api_url)
        self._rates[key] = rate
        return rate

    def _resolve(self, model: str, provider_id: str | None, api_url: str | None) -> _Rate | None:
        lowered = model.lower()
        override = self._overrides.get((provider_id, lowered)) or self._overrides.get((None, lowered))
        if override is not None:
            return override
        snapshot = get_snapshot()
        attempts = [(provider_id, api_url), (provider_id, None), (None, None)]
        for attempt_provider, attempt_url in dict.fromkeys(attempts):
            try:
                _, model_info = snapshot.find_provider_model(model, None, attempt_provider, attempt_url)
            except LookupError:
                continue
            model_price = model_info.get_prices(datetime.now(tz=timezone.utc))
            return _linear_rate(model_info.id, model_price, self._monotonic() + _RATE_TTL_SECONDS)
        return None

    def _unknown(self, model: str) -> CostResult:
        if model not in self._warned_unknown:
            self._warned_unknown.add(model)
            logger.warning(
                "no price known for model %r: its calls are costed at 0 and flagged "
                "cognocient.cost.source=unknown_model; add a pricing override to cost them",
                model,
            )
        return CostResult(_ZERO, "unknown_model", None)


_MISSING = object()
