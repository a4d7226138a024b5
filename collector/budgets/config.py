"""The collector's `budgets:` YAML section: one entry per budget, validated with messages that
name the budget and the field at fault, e.g.
`budgets[0] (document-processor per run): per_run_limit_usd: must be > 0`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

__all__ = ["SCOPE_ORDER", "BudgetConfig", "BudgetConfigError", "BudgetsSection", "Scope", "parse_budgets"]

Scope = Literal["global", "tenant", "feature", "agent"]
Enforcement = Literal["block", "warn"]

# Budgets nest global -> tenant -> feature/agent; a decision reports the outermost budget that
# refused, so that "the whole company is over budget" wins over "this feature is".
SCOPE_ORDER: dict[str, int] = {"global": 0, "tenant": 1, "feature": 2, "agent": 3}

_LIMIT_FIELDS = ("monthly_limit_usd", "daily_limit_usd", "per_run_limit_usd")


class BudgetConfigError(ValueError):
    """The `budgets:` section is invalid; the message lists every fault, one per line."""


class BudgetConfig(BaseModel):
    """One budget. Limits are USD, Decimal; a missing limit means "no limit of that kind"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    scope: Scope
    scope_value: str | None = None
    monthly_limit_usd: Decimal | None = None
    daily_limit_usd: Decimal | None = None
    per_run_limit_usd: Decimal | None = None
    enforcement: Enforcement = "block"
    # Read by the loop detector (issue 5): a run flagged `loop` is blocked like a run over its limit.
    on_loop: Literal["block"] | None = None
    # A reservation not settled within this time is released: the agent died or lost the collector.
    reservation_ttl_seconds: float = Field(default=120.0, gt=0, le=86400)

    @field_validator(*_LIMIT_FIELDS)
    @classmethod
    def _positive(cls, value: Decimal | None) -> Decimal | None:
        if value is not None and (not value.is_finite() or value <= 0):
            raise ValueError("must be > 0")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> BudgetConfig:
        if self.scope == "global" and self.scope_value:
            raise ValueError("scope_value: must be empty for scope global (it applies to every call)")
        if self.scope != "global" and not self.scope_value:
            raise ValueError(f"scope_value: required for scope {self.scope} (which {self.scope}?)")
        if all(getattr(self, name) is None for name in _LIMIT_FIELDS):
            raise ValueError("set at least one of monthly_limit_usd, daily_limit_usd, per_run_limit_usd")
        return self

    def applies_to(self, *, tenant: str, feature: str, agent: str) -> bool:
        """Whether a call of this tenant, feature and agent counts against this budget."""
        if self.scope == "global":
            return True
        return self.scope_value == {"tenant": tenant, "feature": feature, "agent": agent}[self.scope]

    def window_limits(self) -> dict[str, Decimal]:
        """The calendar-window limits of this budget: {"daily": ..., "monthly": ...} as set."""
        limits: dict[str, Decimal] = {}
        if self.daily_limit_usd is not None:
            limits["daily"] = self.daily_limit_usd
        if self.monthly_limit_usd is not None:
            limits["monthly"] = self.monthly_limit_usd
        return limits


def _describe(error: dict[str, Any]) -> str:
    message = str(error["msg"])
    # pydantic prefixes messages raised in validators with "Value error, "; the user needs the rest.
    message = message.removeprefix("Value error, ")
    location = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        message = "unknown field (check its spelling)"
    return f"{location}: {message}" if location else message


def parse_budgets(raw: Any) -> tuple[BudgetConfig, ...]:
    """Validate the `budgets:` section (a list of mappings, or None for "no budgets").

    Raises `BudgetConfigError` naming each faulty budget by index and name, and the field.
    """
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise BudgetConfigError(f"budgets: must be a list of budgets, got {type(raw).__name__}")
    budgets: list[BudgetConfig] = []
    faults: list[str] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(raw):
        label = f"budgets[{index}]"
        if not isinstance(item, dict):
            faults.append(f"{label}: must be a mapping with name, scope and limits")
            continue
        if isinstance(item.get("name"), str) and item["name"]:
            label += f" ({item['name']})"
        try:
            budget = BudgetConfig.model_validate(item)
        except ValidationError as exc:
            faults.extend(f"{label}: {_describe(error)}" for error in exc.errors())
            continue
        if budget.name in seen:
            faults.append(f"{label}: name: duplicate of budgets[{seen[budget.name]}]; names must be unique")
            continue
        seen[budget.name] = index
        budgets.append(budget)
    if faults:
        raise BudgetConfigError("\n".join(faults))
    return tuple(budgets)


def _validate_section(raw: Any) -> tuple[BudgetConfig, ...]:
    if isinstance(raw, tuple) and all(isinstance(item, BudgetConfig) for item in raw):
        return raw
    try:
        return parse_budgets(raw)
    except BudgetConfigError as error:
        # A custom error keeps the message as is (no "Value error, " prefix) in the collector's report.
        raise PydanticCustomError("budgets", "{faults}", {"faults": str(error).replace("\n", "; ")}) from None


BudgetsSection = Annotated[tuple[BudgetConfig, ...], BeforeValidator(_validate_section)]
"""The collector config's top-level `budgets:` field type (`collector/config.py`)."""
