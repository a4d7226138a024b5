"""The order of a run's LLM calls, and which step number a call (or a tool call) reports.

Spans of a run arrive in any order, from several processes. The order is:

* by `cognocient.step` while every LLM call of the run carries a distinct one: the
  instrumentation numbers a run's calls as they start, which no clock skew can disturb;
* by start time as soon as one call lacks it (spans from other instrumentations) or two calls
  carry the same step (the step counts calls per process: the run spans several processes, a
  sub-agent or a run resumed elsewhere). Steps of different sources cannot be compared; wall
  clocks can.

Late arrivals. A check may only see calls of the run that have all arrived: conclusions drawn
from a partial view are final (a flag is raised once). Only `context_bloat` can be misled by a
missing call (a baseline taken mid-run, a streak that a missing call would have broken); a
missing call can only delay a loop or a retry storm, never invent one. So `settled()` is the
prefix of the order up to the first missing step number (step mode only): a gap is waited for
until a call of the run starts `late_arrival_seconds` after the call before the gap (run time,
not wall time: the result stays a function of the spans), then it is taken as lost. In
start-time order gaps cannot be seen, and calls are taken as they come.

The step a flag reports is the call's own `cognocient.step` in the first case and its 1-based
position in the run in the second. A tool call reports the step of the last LLM call that started
before it (the call that asked for the tool), 0 if none did.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from operator import attrgetter
from typing import Any, NamedTuple

from collector.waste.state import CallEntry, RunWasteState

__all__ = ["ScanMark", "Timeline"]

_BY_STEP = attrgetter("step", "start_ns")
_START = attrgetter("start_ns")


class Timeline:
    """A run's calls in run order. `Timeline.of(state)` reads a `RunWasteState`, which keeps its
    calls in this order as they arrive (no sort per batch); `Timeline(calls)` sorts any list."""

    __slots__ = ("_by_time", "_contiguous", "_starts", "_steps_so_far", "by_step", "ordered")

    def __init__(self, calls: Sequence[CallEntry], *, by_step: bool | None = None) -> None:
        if by_step is None:  # an arbitrary list: find the order, then sort
            steps = {call.step for call in calls}
            by_step = None not in steps and len(steps) == len(calls)
            if by_step:
                calls = sorted(calls, key=_BY_STEP)
            else:
                calls = sorted(calls, key=lambda call: (call.start_ns, call.step or 0))
        self.by_step = by_step
        self.ordered: list[CallEntry] = calls if isinstance(calls, list) else list(calls)
        # Steps 1..n with none missing: nothing to wait for (the usual case, checked in O(1):
        # distinct steps in order).
        self._contiguous = by_step and (not calls or (calls[0].step == 1 and calls[-1].step == len(calls)))
        self._by_time: list[CallEntry] | None = None
        self._starts: list[int] = []
        self._steps_so_far: list[int] = []

    @classmethod
    def of(cls, state: RunWasteState) -> Timeline:
        return cls(state.calls, by_step=state.by_step)

    def __len__(self) -> int:
        return len(self.ordered)

    def settled(self, late_arrival_ns: int) -> int:
        """How many calls at the head of `ordered` no missing step can still precede."""
        if not self.by_step or self._contiguous:
            return len(self.ordered)
        newest_start = max(map(_START, self.ordered))
        expected = 1
        waited_since = self.ordered[0].start_ns
        for index, call in enumerate(self.ordered):
            step = call.step or 0
            if step > expected and newest_start - waited_since < late_arrival_ns:
                return index
            if step >= expected:
                expected = step + 1
            waited_since = call.start_ns
        return len(self.ordered)

    def step_at(self, index: int) -> int:
        """The step to report for `self.ordered[index]`."""
        call = self.ordered[index]
        if self.by_step and call.step is not None:
            return call.step
        return index + 1

    def step_before(self, start_ns: int) -> int:
        """The step of the last LLM call started at or before `start_ns`; 0 if none."""
        if self._by_time is None:
            self._index_by_time()
        position = bisect_right(self._starts, start_ns)
        return self._steps_so_far[position - 1] if position else 0

    def _index_by_time(self) -> None:
        reported = {id(call): self.step_at(index) for index, call in enumerate(self.ordered)}
        self._by_time = sorted(self.ordered, key=lambda call: call.start_ns)
        self._starts = [call.start_ns for call in self._by_time]
        highest = 0
        for call in self._by_time:
            highest = max(highest, reported[id(call)])
            self._steps_so_far.append(highest)


class ScanMark(NamedTuple):
    """"The first `count` calls were found clean", valid while they are still the first ones.

    Calls are only ever added, so the first `count` calls are unchanged exactly when the order
    is the same kind and the call that was last among them is still at position `count - 1`
    (a call that arrived late and sorts before it would have pushed it back).
    """

    by_step: bool
    count: int
    last: CallEntry
    resume: Any = None  # what the check needs to go on from `count` (see scan_context_bloat)

    @classmethod
    def of(cls, timeline: Timeline, count: int, resume: Any = None) -> ScanMark | None:
        if count <= 0:
            return None
        # tuple.__new__ directly: a mark is made per run and batch
        return _new_mark(cls, (timeline.by_step, count, timeline.ordered[count - 1], resume))

    @staticmethod
    def clean_prefix(timeline: Timeline, mark: ScanMark | None) -> int:
        """How many leading calls of `timeline` are known clean (0 when the mark no longer holds)."""
        if mark is None:
            return 0
        by_step, count, last, _resume = mark
        ordered = timeline.ordered
        if by_step != timeline.by_step or count > len(ordered):
            return 0
        return count if ordered[count - 1] is last else 0


_new_mark = tuple.__new__
