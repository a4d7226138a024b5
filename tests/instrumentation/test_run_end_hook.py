"""`BudgetGuard.on_run_end`: told once, when the outermost `run()` of a run id in this process
exits (sync, async, decorator), not when a nested sub-run exits; a broken guard breaks nothing."""

from __future__ import annotations

import asyncio
import logging
import threading
from decimal import Decimal

import pytest

import cognocient_otel
from cognocient_otel.budget.guard import BudgetGuard
from cognocient_otel.runs import Run


class EndRecordingGuard(BudgetGuard):
    def __init__(self) -> None:
        self.ended: list[tuple[str, str, bool]] = []  # (run id, agent, root span ended by then)
        self._lock = threading.Lock()

    def on_run_end(self, run: Run) -> None:
        with self._lock:
            self.ended.append((run.id, run.agent, not run.span.is_recording()))


@pytest.fixture
def guard(instrument) -> EndRecordingGuard:
    recording = EndRecordingGuard()
    instrument(guards=[recording])
    return recording


def test_the_outermost_run_tells_the_guards_once_after_its_root_span_ended(guard) -> None:
    with cognocient_otel.run("planner", feature="f") as outer:
        with cognocient_otel.run("writer") as sub_run:
            assert sub_run.id == outer.id
        assert guard.ended == []  # a sub-run's exit is not the run's end
    assert guard.ended == [(outer.id, "planner", True)]


def test_a_run_that_raises_still_ends(guard) -> None:
    with pytest.raises(RuntimeError), cognocient_otel.run("planner", run_id="failing"):
        raise RuntimeError("the agent failed")
    assert guard.ended == [("failing", "planner", True)]


async def test_async_runs_and_decorated_functions_end_too(guard) -> None:
    @cognocient_otel.run("decorated", run_id="deco")
    def work() -> str:
        return "done"

    assert work() == "done"
    async with cognocient_otel.run("async-agent", run_id="async-run"):
        await asyncio.sleep(0)
    assert [ended[:2] for ended in guard.ended] == [("deco", "decorated"), ("async-run", "async-agent")]


def test_a_run_id_open_twice_ends_when_the_last_one_exits(guard) -> None:
    """Two threads enter `run(run_id="shared")`: the run is over here only when both are done."""
    first_inside, release_first = threading.Event(), threading.Event()

    def first() -> None:
        with cognocient_otel.run("worker-1", run_id="shared"):
            first_inside.set()
            release_first.wait(5)

    thread = threading.Thread(target=first)
    thread.start()
    assert first_inside.wait(5)
    with cognocient_otel.run("worker-2", run_id="shared"):
        pass
    assert guard.ended == []
    release_first.set()
    thread.join(5)
    assert [ended[:2] for ended in guard.ended] == [("shared", "worker-1")]


def test_an_independent_run_inside_another_ends_on_its_own(guard) -> None:
    with cognocient_otel.run("outer", run_id="outer-run"):
        with cognocient_otel.run("other", run_id="inner-run"):
            pass
        assert [ended[:2] for ended in guard.ended] == [("inner-run", "other")]
    assert [ended[0] for ended in guard.ended] == ["inner-run", "outer-run"]


def test_a_broken_guard_is_logged_and_the_next_guard_still_told(instrument, caplog) -> None:
    class BrokenGuard(BudgetGuard):
        def on_run_end(self, run: Run) -> None:
            raise ValueError("guard bug")

    recording = EndRecordingGuard()
    instrument(guards=[BrokenGuard(), recording])
    with caplog.at_level(logging.WARNING, logger="cognocient_otel"), cognocient_otel.run("a", run_id="r1"):
        pass
    assert [ended[0] for ended in recording.ended] == ["r1"]
    assert "BrokenGuard.on_run_end" in caplog.text


def test_guards_without_the_hook_are_skipped(instrument) -> None:
    class OldStyleGuard:  # duck-typed, written before on_run_end existed
        def before_call(self, call):
            return None

        def after_call(self, call, actual_cost_usd: Decimal) -> None:
            return None

    recording = EndRecordingGuard()
    instrument(guards=[OldStyleGuard(), recording])
    with cognocient_otel.run("a", run_id="r2"):
        pass
    assert [ended[0] for ended in recording.ended] == ["r2"]


def test_no_guard_is_told_once_uninstrumented(instrument) -> None:
    recording = EndRecordingGuard()
    instrument(guards=[recording])
    cognocient_otel.uninstrument()
    with cognocient_otel.run("a", run_id="r3"):
        pass
    assert recording.ended == []
