"""Run context: context manager, async, decorator, nesting, and joining a run across processes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from opentelemetry import trace

import cognocient_otel
from cognocient_otel import current_run


def test_every_span_in_the_run_carries_the_run_id(traced) -> None:
    tracer = traced.provider.get_tracer("other-instrumentation")
    with cognocient_otel.run("planner", feature="research") as run:
        assert current_run() is run
        with tracer.start_as_current_span("db query"), tracer.start_as_current_span("nested"):
            pass
    assert current_run() is None
    spans = {span.name: span for span in traced.spans()}
    assert set(spans) == {"invoke_agent planner", "db query", "nested"}
    assert {span.attributes["cognocient.run.id"] for span in spans.values()} == {run.id}
    root = spans["invoke_agent planner"]
    assert root.parent is None
    assert root.kind == trace.SpanKind.INTERNAL
    assert root.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert root.attributes["cognocient.feature"] == "research"
    assert len(run.id) == 36  # a UUID4
    with tracer.start_as_current_span("outside"):
        pass
    assert "cognocient.run.id" not in traced.spans()[-1].attributes


def test_run_id_can_be_given_to_resume(traced) -> None:
    with cognocient_otel.run("resumer", run_id="resumed-run-7") as run:
        assert run.id == "resumed-run-7"
    assert traced.spans()[0].attributes["cognocient.run.id"] == "resumed-run-7"


def test_decorator_sync_and_async(traced) -> None:
    seen: list[str] = []

    @cognocient_otel.run("decorated", feature="batch")
    def work(x: int) -> int:
        run = current_run()
        assert run is not None
        seen.append(run.id)
        return x * 2

    @cognocient_otel.run("decorated-async")
    async def work_async(x: int) -> int:
        await asyncio.sleep(0)
        seen.append(current_run().id)
        return x + 1

    assert work(2) == 4 and work(3) == 6
    assert asyncio.run(work_async(1)) == 2
    assert len(set(seen)) == 3  # each call is its own run
    assert work.__name__ == "work"
    assert [s.name for s in traced.spans()] == ["invoke_agent decorated"] * 2 + [
        "invoke_agent decorated-async"
    ]


async def test_concurrent_tasks_keep_their_own_runs(traced) -> None:
    async def agent(name: str) -> tuple[str, str]:
        async with cognocient_otel.run(name) as run:
            await asyncio.sleep(0.01)
            return run.id, current_run().id

    results = await asyncio.gather(*(agent(f"a{i}") for i in range(5)))
    assert all(outer == inner for outer, inner in results)
    assert len({outer for outer, _ in results}) == 5


def test_nested_run_is_a_sub_run_unless_a_new_id_is_asked_for(traced) -> None:
    with cognocient_otel.run("outer", feature="f") as outer:
        with cognocient_otel.run("inner") as inner:
            assert inner.id == outer.id and inner.parent is outer and inner.feature == "f"
        with cognocient_otel.run("separate", run_id="other-run") as separate:
            assert separate.id == "other-run" and separate.parent is None
            assert current_run() is separate
        assert current_run() is outer
    names = {s.name: s.attributes["cognocient.run.id"] for s in traced.spans()}
    assert names == {
        "invoke_agent inner": outer.id,
        "invoke_agent separate": "other-run",
        "invoke_agent outer": outer.id,
    }


def test_exception_in_run_marks_the_root_span(traced) -> None:
    with pytest.raises(ZeroDivisionError), cognocient_otel.run("crasher"):
        1 / 0  # noqa: B018
    root = traced.spans()[0]
    assert root.status.status_code.name == "ERROR"
    assert root.attributes["error.type"] == "ZeroDivisionError"
    assert current_run() is None


def test_sub_agent_in_another_process_joins_the_run(traced) -> None:
    script = Path(__file__).with_name("subagent_server.py")
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        port = int(process.stdout.readline())
        with cognocient_otel.run("orchestrator", feature="research") as run:
            reply = httpx.post(f"http://127.0.0.1:{port}/", json={"task": "look it up"}, timeout=20).json()
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert reply["run_id"] == run.id
    assert reply["feature"] == "research"
    root = next(s for s in traced.spans() if s.name == "invoke_agent orchestrator")
    assert {span["name"] for span in reply["spans"]} == {"invoke_agent sub-agent", "tool work"}
    for span in reply["spans"]:
        assert span["attributes"]["cognocient.run.id"] == run.id
        assert span["trace_id"] == f"{root.context.trace_id:032x}"


def test_processor_is_added_once_to_the_given_provider(instrument, make_traced) -> None:
    from cognocient_otel.processor import RunAttributesSpanProcessor

    traced = make_traced()
    instrument(traced)
    cognocient_otel.uninstrument()
    instrument(traced)
    processors = traced.provider._active_span_processor._span_processors
    assert sum(isinstance(p, RunAttributesSpanProcessor) for p in processors) == 1
