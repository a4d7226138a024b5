"""Scripted agent runs through the real openai SDK against the local LLM server, instrumented with
cognocient_otel, exported with the OTel SDK's OTLP/gRPC exporter to a real collector process: the
waste flags show in GET /v1/runs/{id}, GET /v1/runs?flag=..., and cognocient_waste_flags_total."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal

import openai
import pytest
from waste_e2e import WasteCollector, exporting_provider, wait_for

import cognocient_otel
from cognocient_otel.pricing import PriceBook, TokenUsage
from cognocient_otel.testing import LLMServer, ScriptedResponse

MODEL = "gpt-4o-mini"
BLOAT_INPUTS = [1000, 1100, 1200, 2500, 5000, 10000, 20000]


def _cost(input_tokens: int, output_tokens: int) -> Decimal:
    return PriceBook().cost(model=MODEL, usage=TokenUsage(input_tokens, output_tokens)).usd


@dataclass
class Scenario:
    collector: WasteCollector
    runs: dict[str, str] = field(default_factory=dict)  # name -> run id
    steps: dict[str, int] = field(default_factory=dict)  # name -> LLM calls made


def _ask(client: openai.OpenAI, messages: list[dict[str, str]]) -> str:
    reply = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=50)
    return reply.choices[0].message.content or ""


def _bloating_agent(client: openai.OpenAI, server: LLMServer) -> None:
    """Re-sends its whole history, to which each step adds an ever larger tool result."""
    history = [{"role": "system", "content": "You research filings."},
               {"role": "user", "content": "Summarise the 10-K."}]
    for step, tokens in enumerate(BLOAT_INPUTS, start=1):
        server.script([ScriptedResponse(input_tokens=tokens, output_tokens=50, text=f"read part {step}")])
        history.append({"role": "assistant", "content": _ask(client, history)})
        history.append({"role": "user", "content": "tool result: " + "filing text " * tokens})


def _looping_agent(client: openai.OpenAI, server: LLMServer) -> None:
    """Asks the very same question four times (its state never changes)."""
    messages = [{"role": "user", "content": "Is the export job done?"}]
    for _ in range(4):
        server.script([ScriptedResponse(input_tokens=2000, output_tokens=100, text="not yet")])
        _ask(client, messages)


def _storming_agent(client: openai.OpenAI, server: LLMServer) -> None:
    """Retries immediately on 429, five times, then gets through."""
    server.script([ScriptedResponse(status=429, retry_after=0)] * 5 + [ScriptedResponse(input_tokens=900)])
    messages = [{"role": "user", "content": "Classify this ticket."}]
    for _ in range(6):
        try:
            _ask(client, messages)
            return
        except openai.RateLimitError:
            continue


def _tool_looping_agent(client: openai.OpenAI, server: LLMServer, tracer) -> None:
    """Each step the model asks for the same tool call again, which the agent runs again."""
    messages = [{"role": "user", "content": "Where is order 42?"}]
    for step in range(1, 4):
        server.script([ScriptedResponse(input_tokens=800 + 50 * step, text="call search_orders")])
        messages.append({"role": "assistant", "content": _ask(client, messages)})
        with tracer.start_as_current_span("execute_tool search_orders", attributes={
            "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search_orders",
            "gen_ai.tool.call.arguments": '{"order_id": 42}',
        }):
            messages.append({"role": "user", "content": f"search_orders result {step}: pending"})


def _modest_agent(client: openai.OpenAI, server: LLMServer, *, steps: int, growth: float) -> None:
    """A normal agent: each step appends a message; its input grows by `growth` a step."""
    messages = [{"role": "user", "content": "Plan the migration."}]
    tokens = 1500.0
    for step in range(1, steps + 1):
        server.script([ScriptedResponse(input_tokens=round(tokens), output_tokens=80, text=f"step {step}")])
        messages.append({"role": "assistant", "content": _ask(client, messages)})
        messages.append({"role": "user", "content": f"observation {step}"})
        tokens *= 1 + growth


def _flaky_but_fine_agent(client: openai.OpenAI, server: LLMServer) -> None:
    """Two transient 429s (each retried once) and one deliberate re-ask: under every threshold."""
    script = [ScriptedResponse(input_tokens=1200)] * 2 + [ScriptedResponse(status=429)]
    script += [ScriptedResponse(input_tokens=1300)] * 3 + [ScriptedResponse(status=429)]
    script += [ScriptedResponse(input_tokens=1400)] * 2
    server.script(script)
    questions = ["a", "b", "c", "c", "d", "e"]  # "c" asked twice on purpose
    for question in questions:
        messages = [{"role": "user", "content": f"question {question}"}]
        try:
            _ask(client, messages)
        except openai.RateLimitError:
            _ask(client, messages)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    collector = WasteCollector(tmp_path_factory.mktemp("waste-e2e"), {}).start()
    provider = exporting_provider(collector)
    cognocient_otel.instrument(tracer_provider=provider)
    tracer = provider.get_tracer("waste-e2e-agent")
    result = Scenario(collector)
    try:
        with LLMServer() as server:
            client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="test", max_retries=0)
            agents = {
                "bloat": lambda: _bloating_agent(client, server),
                "loop": lambda: _looping_agent(client, server),
                "storm": lambda: _storming_agent(client, server),
                "tools": lambda: _tool_looping_agent(client, server, tracer),
                "modest-10": lambda: _modest_agent(client, server, steps=10, growth=0.15),
                "modest-12": lambda: _modest_agent(client, server, steps=12, growth=0.20),
                "flaky": lambda: _flaky_but_fine_agent(client, server),
            }
            for name, agent in agents.items():
                before = server.request_count()
                with cognocient_otel.run(f"{name}-agent", feature=f"e2e-{name}") as run:
                    agent()
                result.runs[name] = run.id
                result.steps[name] = server.request_count() - before
        assert provider.force_flush(10_000)
        for name, run_id in result.runs.items():
            wait_for(lambda run_id=run_id, name=name: _complete(collector, run_id, result.steps[name]),
                     what=f"run {name} finished with all its calls")
        yield result
    finally:
        cognocient_otel.uninstrument()
        provider.shutdown()
        collector.stop()


def _complete(collector: WasteCollector, run_id: str, steps: int) -> bool:
    run = collector.run(run_id)
    return run is not None and run["status"] == "finished" and run["steps"] == steps


def _flags(scenario: Scenario, name: str) -> list[dict]:
    run = scenario.collector.run(scenario.runs[name])
    assert run is not None
    return run["waste_flags"]


def test_a_run_resending_its_growing_history_is_flagged_bloat_at_step_6(scenario):
    [flag] = _flags(scenario, "bloat")
    assert flag["kind"] == "context_bloat"
    assert flag["step"] == 6
    assert flag["message"].startswith(
        "Context bloat after step 3: input grew 8.3x over 3 steps (1,200 -> 10,000 input tokens at step 6)")
    rate = _cost(1_000_000, 0) / 1_000_000
    expected = sum(rate * (tokens - 1200) for tokens in (2500, 5000, 10000))
    assert flag["wasted_cost_usd"] == pytest.approx(float(expected), rel=1e-9)


def test_a_run_repeating_the_same_request_is_a_loop_at_the_third_and_says_what_repeats_cost(scenario):
    [flag] = _flags(scenario, "loop")
    assert (flag["kind"], flag["step"]) == ("loop", 3)
    repeats = 2 * _cost(2000, 100)
    assert flag["wasted_cost_usd"] == pytest.approx(float(repeats), rel=1e-9)
    assert flag["message"].startswith("Loop at step 3: the same request was sent 3 times (first at step 1)")


def test_a_run_whose_calls_get_429s_is_a_retry_storm(scenario):
    [flag] = _flags(scenario, "storm")
    assert (flag["kind"], flag["step"]) == ("retry_storm", 5)
    assert "5 failed LLM calls" in flag["message"]
    assert "429 x5" in flag["message"]


def test_the_same_tool_call_repeated_is_a_loop(scenario):
    [flag] = _flags(scenario, "tools")
    assert (flag["kind"], flag["step"]) == ("loop", 3)
    assert flag["message"] == (
        "Loop after step 3: tool 'search_orders' was called 3 times with the same arguments")
    assert "wasted_cost_usd" not in flag


@pytest.mark.parametrize("name", ["modest-10", "modest-12", "flaky"])
def test_normal_runs_raise_no_flag(scenario, name):
    assert scenario.steps[name] >= 8
    assert _flags(scenario, name) == []


def test_runs_api_filters_by_flag(scenario):
    names = {run_id: name for name, run_id in scenario.runs.items()}
    by_flag = {
        kind: sorted(names[run["run_id"]] for run in scenario.collector.runs(flag=kind))
        for kind in ("context_bloat", "loop", "retry_storm")
    }
    assert by_flag == {"context_bloat": ["bloat"], "loop": ["loop", "tools"], "retry_storm": ["storm"]}


def test_prometheus_counts_each_flag_once_by_feature_and_kind(scenario):
    assert scenario.collector.waste_flag_counts() == {
        ("e2e-bloat", "context_bloat"): 1.0,
        ("e2e-loop", "loop"): 1.0,
        ("e2e-tools", "loop"): 1.0,
        ("e2e-storm", "retry_storm"): 1.0,
    }
