"""`context_bloat`: a run's input per call keeps compounding, or one call nearly fills its context window.

Growth check (needs `gen_ai.usage.input_tokens`, which every GenAI instrumentation sets): at a call
n after the first `baseline_steps` calls, the input is more than `growth_factor` times the median
input of those first calls, at least `min_input_tokens`, and each of the last `growing_steps` calls
grew by at least `min_step_growth` over the call before it. The growth started after the last call
before that streak; the flag's wasted cost is what the input tokens above that call's input cost,
from there to the call that raised the flag (an estimate: input tokens priced at the model's rate).

Context-window check (needs the model to be known to genai-prices or to `waste.context_windows`):
one call's input is more than `context_window_share` of its model's context window.

Calls that reported no input tokens (failed calls, most of all) are not part of the series.
The growth check waits for late calls (`Timeline.settled()`); a missing call could otherwise
make a baseline taken mid-run look small, or a streak look unbroken.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from itertools import pairwise

from collector.waste.config import ContextBloatConfig
from collector.waste.flags import CONTEXT_BLOAT, WasteFlag
from collector.waste.money import format_usd
from collector.waste.state import CallEntry
from collector.waste.timeline import Timeline

InputCost = Callable[[CallEntry], "Decimal | None"]
GrowthResume = tuple[float, int, int]
"""Where a clean growth scan stopped: (baseline, streak, index of the last call with tokens)."""

__all__ = ["GrowthResume", "scan_context_bloat"]


def scan_context_bloat(
    timeline: Timeline,
    config: ContextBloatConfig,
    *,
    settled: int | None = None,
    growth_from: int = 0,
    window_from: int = 0,
    input_cost: InputCost | None = None,
    growth_resume: GrowthResume | None = None,
) -> tuple[WasteFlag | None, GrowthResume | None]:
    """The first call of the run (in timeline order) at which either check holds, or None; and
    where the growth scan stopped when it found nothing.

    The growth check reads only the first `settled` calls (see `Timeline.settled()`); the
    window check concerns one call alone and reads them all. `growth_from` / `window_from` say
    how many leading calls (in this same order) an earlier pass already found clean: a check at
    call n reads calls up to n only, so they need not be read again. `input_cost(call)` prices a
    call's input tokens for the wasted-cost estimate (None: not priced); it is asked only for the
    calls of a flag's growth streak.

    The stop point, given back as `growth_resume` with `growth_from` set to the `settled` of that
    scan, spares the next scan re-deriving the baseline and the streak (valid while those calls
    are unchanged).
    """
    limit = len(timeline) if settled is None else settled
    price = input_cost or _unpriced
    growth, resume = _growth(timeline, config, limit, growth_from, price, growth_resume)
    window = _window(timeline, config, window_from)
    if growth is None or window is None:
        return growth or window, resume
    return min(growth, window, key=lambda flag: flag.details["position"]), resume


def _unpriced(call: CallEntry) -> Decimal | None:
    return None


def _median(values: list[int]) -> float | int:
    """statistics.median, without its overhead (called once per run and batch)."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _growth(
    timeline: Timeline, config: ContextBloatConfig, limit: int, start: int, input_cost: InputCost,
    resume: GrowthResume | None,
) -> tuple[WasteFlag | None, GrowthResume | None]:
    ordered = timeline.ordered
    factor = 1.0 + config.min_step_growth
    if resume is not None and start > 0:
        # The first `start` calls are unchanged since the scan that stopped there: the baseline
        # came from them, and so did the streak and the last call that reported tokens.
        baseline, streak, last_index = resume
        last: int | None = last_index
        first = start
    else:
        baseline_calls = _with_tokens(range(limit), ordered, config.baseline_steps)
        if len(baseline_calls) < config.baseline_steps:
            return None, None
        baseline = _median([ordered[index].input_tokens for index in baseline_calls])
        first = max(start, baseline_calls[-1] + 1)  # the flagged call comes after the baseline calls
        # The streak of growing calls that ends just before `first` (only whether it reaches
        # growing_steps matters, so at most that many calls back are read).
        previous = _with_tokens(range(first - 1, -1, -1), ordered, config.growing_steps + 1)
        streak = 0
        for later, earlier in pairwise(previous):
            if not _grew(ordered[earlier].input_tokens, ordered[later].input_tokens, factor):
                break
            streak += 1
        last = previous[0] if previous else None
    threshold = config.growth_factor * baseline
    growing_steps, min_input_tokens = config.growing_steps, config.min_input_tokens
    before = ordered[last].input_tokens if last is not None else None
    for index in range(first, limit):
        tokens = ordered[index].input_tokens
        if tokens <= 0:
            continue
        if before is not None:  # _grew(before, tokens, factor), inlined: this loop runs per call
            streak = streak + 1 if tokens > before and tokens >= before * factor else 0
        last, before = index, tokens
        if streak >= growing_steps and tokens > threshold and tokens >= min_input_tokens:
            flag = _growth_flag(timeline, _streak_ending_at(ordered, index, factor), baseline, input_cost)
            return flag, None
    return None, (None if last is None else (baseline, streak, last))


def _grew(before: int, after: int, factor: float) -> bool:
    return after > before and after >= before * factor


def _with_tokens(indexes: range, ordered: list, wanted: int) -> list[int]:
    """The first `wanted` of `indexes` whose call reported input tokens."""
    found = []
    for index in indexes:
        if ordered[index].input_tokens > 0:
            found.append(index)
            if len(found) == wanted:
                break
    return found


def _streak_ending_at(ordered: list, index: int, factor: float) -> list[int]:
    """The calls with input tokens from the last one before the growth through `index`."""
    streak = [index]
    for earlier in range(index - 1, -1, -1):
        tokens = ordered[earlier].input_tokens
        if tokens <= 0:
            continue
        if not _grew(tokens, ordered[streak[-1]].input_tokens, factor):
            break  # the growth started after `earlier`: streak[-1] is the call before it
        streak.append(earlier)
    streak.reverse()
    return streak


def _growth_flag(
    timeline: Timeline, streak_indexes: list[int], baseline: float, input_cost: InputCost
) -> WasteFlag:
    first_index, last_index = streak_indexes[0], streak_indexes[-1]
    first, last = timeline.ordered[first_index], timeline.ordered[last_index]
    started_after = timeline.step_at(first_index)
    step = timeline.step_at(last_index)
    growth = last.input_tokens / first.input_tokens
    wasted = _excess_input_cost(timeline, streak_indexes[1:], first.input_tokens, input_cost)
    message = (
        f"Context bloat after step {started_after}: input grew {growth:.1f}x over "
        f"{step - started_after} steps ({first.input_tokens:,} -> {last.input_tokens:,} input tokens "
        f"at step {step})"
    )
    if wasted is not None:
        message += f"; the extra input cost {format_usd(wasted)}"
    return WasteFlag(
        CONTEXT_BLOAT, step, message, wasted, last.start_ns,
        {
            "check": "growth",
            "position": last_index,
            "started_after_step": started_after,
            "growth": round(growth, 2),
            "baseline_input_tokens": baseline,
            "input_tokens_from": first.input_tokens,
            "input_tokens_to": last.input_tokens,
        },
    )


def _excess_input_cost(
    timeline: Timeline, indexes: list[int], base_tokens: int, input_cost: InputCost
) -> Decimal | None:
    """What the input tokens above `base_tokens` cost over `indexes`; None if no call there has a price."""
    total: Decimal | None = None
    for index in indexes:
        call = timeline.ordered[index]
        input_usd = input_cost(call)
        if input_usd is None:
            continue
        excess = Decimal(call.input_tokens - base_tokens) / Decimal(call.input_tokens)
        total = (total or Decimal(0)) + input_usd * excess
    return total


def _window(timeline: Timeline, config: ContextBloatConfig, start: int) -> WasteFlag | None:
    share_limit = config.context_window_share
    if share_limit is None:
        return None
    ordered = timeline.ordered
    for index in range(start, len(ordered)):
        call = ordered[index]
        priced = call.priced
        if call.input_tokens <= 0 or priced is None:
            continue
        window = call.context_window
        if not window or call.input_tokens <= share_limit * window:
            continue
        step = timeline.step_at(index)
        share = call.input_tokens / window
        message = (
            f"Context bloat at step {step}: the input of {call.input_tokens:,} tokens fills {share:.0%} "
            f"of the model's {window:,}-token context window"
        )
        return WasteFlag(
            CONTEXT_BLOAT, step, message, None, call.start_ns,
            {"check": "context_window", "position": index, "input_tokens": call.input_tokens,
             "context_window": window, "share": round(share, 3)},
        )
    return None
