"""The `waste:` section of the collector's YAML: thresholds of the three waste detectors.

```yaml
waste:
  enabled: true
  max_tracked_calls: 1000
  late_arrival_seconds: 30
  context_windows: {my-self-hosted-model: 32768}
  context_bloat: {baseline_steps: 3, growth_factor: 3.0, growing_steps: 3,
                  min_step_growth: 0.25, min_input_tokens: 1000, context_window_share: 0.8}
  loop: {repeats: 3, tools: true}
  retry_storm: {failures: 5, window_seconds: 60}
```

Why these defaults (docs/waste.md has the long form):

* `context_bloat`: an agent that appends one message per call grows its input by ~10-20 % a step;
  that is normal and is never flagged. Bloat is input that is already `growth_factor` (3x) the
  median of the first `baseline_steps` (3) calls *and* grew by at least `min_step_growth` (25 %)
  at each of the last `growing_steps` (3) calls: it is still compounding. Inputs under
  `min_input_tokens` are too cheap to matter. Independently, one call using more than
  `context_window_share` (80 %) of its model's context window is flagged: the next turn will not fit.
* `loop`: twice the same request can be a deliberate re-ask; the third identical one is not.
* `retry_storm`: the OpenAI and Anthropic SDKs retry a failed call twice by default, so one call
  that fails for good makes 3 failed attempts; 5 failures within 60 s is more than one call's
  worth of retries.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError

__all__ = [
    "ContextBloatConfig",
    "LoopConfig",
    "RetryStormConfig",
    "WasteConfig",
    "WasteConfigError",
    "load_waste_config",
]


class _Section(BaseModel):
    # A misspelt threshold must fail loudly, not silently keep its default.
    model_config = ConfigDict(extra="forbid", frozen=True)


class ContextBloatConfig(_Section):
    enabled: bool = True
    baseline_steps: int = Field(3, ge=1, le=100, description="first calls whose median input is the baseline")
    growth_factor: float = Field(3.0, gt=1.0, description="input must exceed this times the baseline")
    growing_steps: int = Field(3, ge=1, le=100, description="consecutive calls that must each have grown")
    min_step_growth: float = Field(
        0.25, ge=0.0, description="growth of each of those calls, as a fraction of the call before")
    min_input_tokens: int = Field(1000, ge=0, description="smaller inputs are never flagged")
    context_window_share: float | None = Field(
        0.8, gt=0.0, le=1.0, description="one call over this share of its model's context window; null: off")


class LoopConfig(_Section):
    enabled: bool = True
    repeats: int = Field(3, ge=2, le=1000, description="the same request, or tool call, this many times")
    tools: bool = Field(True, description="also count execute_tool spans with the same name and arguments")


class RetryStormConfig(_Section):
    enabled: bool = True
    failures: int = Field(5, ge=2, le=10_000, description="failed LLM calls within window_seconds")
    window_seconds: float = Field(60.0, gt=0.0, le=86_400.0)


class WasteConfig(_Section):
    enabled: bool = True
    max_tracked_calls: int = Field(
        1000, ge=10, le=100_000,
        description="LLM calls (and as many tool calls) kept per run; later ones are not examined")
    late_arrival_seconds: float = Field(
        30.0, ge=0.0, le=3600.0,
        description="how long (in the run's own time) a missing cognocient.step is waited for")
    context_windows: dict[str, PositiveInt] = Field(
        default_factory=dict,
        description="context window in tokens by model name, for models genai-prices does not know")
    context_bloat: ContextBloatConfig = ContextBloatConfig()
    loop: LoopConfig = LoopConfig()
    retry_storm: RetryStormConfig = RetryStormConfig()

    @property
    def any_enabled(self) -> bool:
        return self.enabled and (self.context_bloat.enabled or self.loop.enabled or self.retry_storm.enabled)


class WasteConfigError(ValueError):
    """The `waste:` section is invalid; the message names each field at fault."""


def load_waste_config(raw: Any, *, section: str = "waste") -> WasteConfig:
    """Validate the `waste:` section (a mapping, or None for all defaults).

    Raises `WasteConfigError` whose message names each field at fault as a dotted path
    (``waste.context_bloat.growth_factor: Input should be greater than 1``).
    """
    if raw is None:
        return WasteConfig()
    if not isinstance(raw, dict):
        raise WasteConfigError(f"{section}: must be a mapping of detector settings, got {type(raw).__name__}")
    try:
        return WasteConfig.model_validate(raw)
    except ValidationError as error:
        raise WasteConfigError(describe_validation_error(error, section=section)) from None


def describe_validation_error(error: ValidationError, *, section: str) -> str:
    problems = []
    for detail in error.errors():
        path = ".".join(str(part) for part in (section, *detail["loc"]))
        message = detail["msg"]
        if detail["type"] == "extra_forbidden":
            message = "unknown setting (misspelt?)"
        problems.append(f"{path}: {message}")
    return "; ".join(problems)
