"""Spans from another GenAI instrumentation (opentelemetry-instrumentation-openai-v2): no
`cognocient.step`, no request fingerprint, no run id (the trace is the run). Token growth, tool
repetition and failures are still seen; a repeated request cannot be, and is not flagged."""

from __future__ import annotations

import openai
import pytest
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
from opentelemetry.trace import format_trace_id
from waste_e2e import WasteCollector, exporting_provider, wait_for

from cognocient_otel.testing import LLMServer, ScriptedResponse

MODEL = "gpt-4o-mini"


def _ask(client: openai.OpenAI, text: str) -> None:
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": text}], max_tokens=20)


@pytest.fixture(scope="module")
def flags_by_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict]]:
    collector = WasteCollector(tmp_path_factory.mktemp("other-instrumentation"), {}).start()
    provider = exporting_provider(collector, service="openai-v2-agent")
    tracer = provider.get_tracer("agent")
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    runs: dict[str, tuple[str, int]] = {}  # name -> (run id = trace id, LLM calls)
    try:
        with LLMServer() as server:
            client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="test", max_retries=0)

            def agent(name: str, body) -> None:
                before = server.request_count()
                with tracer.start_as_current_span(f"invoke_agent {name}", attributes={
                    "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": name,
                }) as root:
                    body()
                runs[name] = (format_trace_id(root.get_span_context().trace_id),
                              server.request_count() - before)

            def bloat() -> None:
                for step, tokens in enumerate([1000, 1100, 1200, 2500, 5000, 10000, 20000], start=1):
                    server.script([ScriptedResponse(input_tokens=tokens)])
                    _ask(client, f"history so far, step {step}")

            def same_request() -> None:
                for _ in range(4):
                    _ask(client, "Is the export job done?")

            def tool_loop() -> None:
                for step in range(1, 4):
                    _ask(client, f"where is order 42? attempt {step}")
                    with tracer.start_as_current_span("execute_tool search_orders", attributes={
                        "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search_orders",
                        "gen_ai.tool.call.arguments": '{"order_id": 42}',
                    }):
                        pass

            def storm() -> None:
                server.script([ScriptedResponse(status=429)] * 5)
                for _ in range(5):
                    with pytest.raises(openai.RateLimitError):
                        _ask(client, "classify")
                _ask(client, "classify")

            for name, body in (("bloat", bloat), ("same-request", same_request), ("tools", tool_loop),
                               ("storm", storm)):
                agent(name, body)
        assert provider.force_flush(10_000)
        for name, (run_id, calls) in runs.items():
            wait_for(lambda run_id=run_id, calls=calls: _finished(collector, run_id, calls),
                     what=f"run {name}")
        return {name: collector.run(run_id)["waste_flags"] for name, (run_id, _calls) in runs.items()}
    finally:
        OpenAIInstrumentor().uninstrument()
        provider.shutdown()
        collector.stop()


def _finished(collector: WasteCollector, run_id: str, calls: int) -> bool:
    run = collector.run(run_id)
    return run is not None and run["status"] == "finished" and run["steps"] == calls


def test_token_growth_is_seen_without_steps_or_fingerprints(flags_by_run):
    [flag] = flags_by_run["bloat"]
    assert (flag["kind"], flag["step"]) == ("context_bloat", 6)  # the 6th call by start time
    assert flag["message"].startswith("Context bloat after step 3: input grew 8.3x over 3 steps")
    assert flag["wasted_cost_usd"] > 0  # the collector priced the spans from their tokens


def test_a_repeated_request_cannot_be_recognised_without_a_fingerprint(flags_by_run):
    assert flags_by_run["same-request"] == []


def test_tool_repetition_is_seen(flags_by_run):
    [flag] = flags_by_run["tools"]
    assert (flag["kind"], flag["step"]) == ("loop", 3)


def test_failures_are_seen(flags_by_run):
    [flag] = flags_by_run["storm"]
    assert (flag["kind"], flag["step"]) == ("retry_storm", 5)
    assert "5 failed LLM calls" in flag["message"]
