"""Settings shared by `configure()` and `instrument()`, with validation of user input."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Union

from cognocient_otel.budget.guard import BudgetGuard
from cognocient_otel.pricing import PriceOverride

__all__ = ["PriceOverridesArg", "Settings", "current", "parse_price_overrides", "replace_current"]

# Either PriceOverride objects or {model: {"input": 0.15, "output": 0.6, "cache_read": ...,
# "cache_write": ...}} (USD per million tokens; keys may also be spelled input_per_mtok, ...).
PriceOverridesArg = Union[Iterable[PriceOverride], Mapping[str, Mapping[str, Any]], None]  # noqa: UP007

_PRICE_KEYS = {
    "input": "input_per_mtok",
    "output": "output_per_mtok",
    "cache_read": "cache_read_per_mtok",
    "cache_write": "cache_write_per_mtok",
}


@dataclass
class Settings:
    price_overrides: tuple[PriceOverride, ...] = ()
    inject_headers: bool = True
    providers: dict[str, str] = field(default_factory=dict)
    default_max_output_tokens: int = 1024
    guards: tuple[BudgetGuard, ...] = ()


_current = Settings()


def current() -> Settings:
    """What `configure()` set; `instrument()` arguments take precedence over it."""
    return _current


def replace_current(new: Settings) -> None:
    global _current
    _current = new


def parse_price_overrides(value: PriceOverridesArg) -> tuple[PriceOverride, ...]:
    if value is None:
        return ()
    if isinstance(value, Mapping):
        overrides = []
        for model, prices in value.items():
            if not isinstance(prices, Mapping):
                raise ValueError(
                    f"price_overrides[{model!r}] must be a mapping like {{'input': 0.15, 'output': 0.60}} "
                    "(USD per million tokens)"
                )
            fields: dict[str, Any] = {}
            for key, price in prices.items():
                name = _PRICE_KEYS.get(key, key)
                if name not in _PRICE_KEYS.values() and name != "provider":
                    raise ValueError(
                        f"price_overrides[{model!r}]: unknown key {key!r}; use input, output, cache_read, "
                        "cache_write (USD per million tokens) or provider"
                    )
                fields[name] = price if name == "provider" else Decimal(str(price))
            if "input_per_mtok" not in fields or "output_per_mtok" not in fields:
                raise ValueError(f"price_overrides[{model!r}] needs at least 'input' and 'output' prices")
            overrides.append(PriceOverride(model=model, **fields))
        return tuple(overrides)
    overrides = tuple(value)
    for override in overrides:
        if not isinstance(override, PriceOverride):
            raise ValueError(f"price_overrides items must be PriceOverride objects, got {override!r}")
    return overrides


def validate_guards(guards: Iterable[BudgetGuard] | None) -> tuple[BudgetGuard, ...]:
    result = tuple(guards or ())
    for guard in result:
        if not callable(getattr(guard, "before_call", None)) or not callable(
            getattr(guard, "after_call", None)
        ):
            raise ValueError(f"guards: {guard!r} is not a BudgetGuard (needs before_call and after_call)")
    return result


def validate_max_output_tokens(value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"default_max_output_tokens={value!r}: give a non-negative integer")
    return value
