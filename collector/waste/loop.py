"""`loop`: the same request sent again and again, or the same tool called with the same arguments.

Request check (needs `cognocient.request.fingerprint`, set by cognocient_otel only): the same
fingerprint on `repeats` successful LLM calls of the run. Failed calls are left out: a retry
re-sends the same request by design, and `retry_storm` is the check for those. The flag's wasted
cost is what the repeats (every occurrence after the first, up to the flag) cost.

Tool check (needs `gen_ai.tool.name` and `gen_ai.tool.call.arguments` on `execute_tool` spans):
the same tool with the same arguments `repeats` times. Tool spans carry no cost, so this flag
has no wasted cost.

When both hold, the one that held first (by start time) is the run's loop flag.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from collector.waste.config import LoopConfig
from collector.waste.flags import LOOP, WasteFlag
from collector.waste.money import format_usd
from collector.waste.state import ToolEntry
from collector.waste.timeline import Timeline

__all__ = ["detect_loop"]


def detect_loop(timeline: Timeline, tools: Sequence[ToolEntry], config: LoopConfig) -> WasteFlag | None:
    candidates = [_repeated_request(timeline, config.repeats)]
    if config.tools:
        candidates.append(_repeated_tool(timeline, tools, config.repeats))
    found = [flag for flag in candidates if flag is not None]
    return min(found, key=lambda flag: flag.start_ns) if found else None


def _repeated_request(timeline: Timeline, repeats: int) -> WasteFlag | None:
    seen: dict[str, list[int]] = {}
    for index, call in enumerate(timeline.ordered):
        if call.fingerprint is None or call.error_type is not None:
            continue
        occurrences = seen.setdefault(call.fingerprint, [])
        occurrences.append(index)
        if len(occurrences) < repeats:
            continue
        step = timeline.step_at(index)
        first_step = timeline.step_at(occurrences[0])
        wasted = sum((timeline.ordered[i].cost for i in occurrences[1:]), Decimal(0))
        message = (
            f"Loop at step {step}: the same request was sent {repeats} times (first at step {first_step}); "
            f"the {repeats - 1} repeats cost {format_usd(wasted)}"
        )
        return WasteFlag(
            LOOP, step, message, wasted, call.start_ns,
            {"check": "request", "fingerprint": call.fingerprint, "repeats": repeats,
             "first_step": first_step},
        )
    return None


def _repeated_tool(timeline: Timeline, tools: Sequence[ToolEntry], repeats: int) -> WasteFlag | None:
    counts: dict[str, int] = {}
    for tool in sorted(tools, key=lambda tool: tool.start_ns):
        counts[tool.key] = counts.get(tool.key, 0) + 1
        if counts[tool.key] < repeats:
            continue
        step = timeline.step_before(tool.start_ns)
        message = (f"Loop after step {step}: tool {tool.name!r} was called {repeats} times "
                   "with the same arguments")
        return WasteFlag(
            LOOP, step, message, None, tool.start_ns,
            {"check": "tool", "tool": tool.name, "repeats": repeats},
        )
    return None
