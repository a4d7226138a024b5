"""`retry_storm`: failed LLM calls piling up in a run.

Needs only that failed spans say so: `error.type` (the GenAI and HTTP conventions: an HTTP status
such as `429` or `503`, or an exception name such as `APITimeoutError`), an HTTP status of 400 or
more, or an error span status. Every failed LLM call counts, except calls a budget refused
(`cognocient.budget.decision=blocked`: never sent, so not a retry). The flag is raised at the call
that makes `failures` failures within `window_seconds` (by start time); its wasted cost is what
those calls were billed, usually nothing, which the message then leaves out.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

from collector.waste.config import RetryStormConfig
from collector.waste.flags import RETRY_STORM, WasteFlag
from collector.waste.money import format_usd
from collector.waste.timeline import Timeline

__all__ = ["detect_retry_storm"]


def detect_retry_storm(timeline: Timeline, config: RetryStormConfig) -> WasteFlag | None:
    failed = [index for index, call in enumerate(timeline.ordered) if call.error_type is not None]
    failed.sort(key=lambda index: timeline.ordered[index].start_ns)
    window_ns = int(config.window_seconds * 1e9)
    needed = config.failures
    for j in range(needed - 1, len(failed)):
        burst = failed[j - needed + 1 : j + 1]
        first, last = timeline.ordered[burst[0]], timeline.ordered[burst[-1]]
        if last.start_ns - first.start_ns > window_ns:
            continue
        return _flag(timeline, burst)
    return None


def _flag(timeline: Timeline, burst: list[int]) -> WasteFlag:
    calls = [timeline.ordered[index] for index in burst]
    step = timeline.step_at(burst[-1])
    seconds = (calls[-1].start_ns - calls[0].start_ns) / 1e9
    by_type = Counter(call.error_type for call in calls)
    breakdown = ", ".join(f"{error_type} x{count}" for error_type, count in by_type.most_common())
    wasted = sum((call.cost for call in calls), Decimal(0))
    message = (
        f"Retry storm at step {step}: {len(calls)} failed LLM calls in {seconds:.1f}s ({breakdown}), "
        f"the first at step {timeline.step_at(burst[0])}"
    )
    if wasted:
        message += f"; they cost {format_usd(wasted)}"
    return WasteFlag(
        RETRY_STORM, step, message, wasted, calls[-1].start_ns,
        {"failures": len(calls), "seconds": round(seconds, 3), "error_types": dict(by_type),
         "first_step": timeline.step_at(burst[0])},
    )
