"""`on_loop: block` end to end: an agent whose LLM calls are guarded by the collector's budgets
(the remote budget guard, over gRPC) repeats a request; once the collector flags the run `loop`,
the run's next call is refused before it is sent, like a run over its limit. A run of a feature
that budget does not cover is flagged but goes on."""

from __future__ import annotations

import openai
import pytest
from waste_e2e import WasteCollector, exporting_provider, wait_for

import cognocient_otel
from cognocient_otel import BudgetExceeded
from cognocient_otel.remote_budget import configure_budget_client
from cognocient_otel.testing import LLMServer, ScriptedResponse
from collector.process import CollectorStartError

QUESTION = [{"role": "user", "content": "Is the report ready?"}]
BUDGETS = [{"name": "reporter runaway guard", "scope": "feature", "scope_value": "e2e-guarded",
            "per_run_limit_usd": 5, "on_loop": "block"}]


def _ask(client: openai.OpenAI, server: LLMServer) -> None:
    server.script([ScriptedResponse(input_tokens=1200, output_tokens=30, text="not yet")])
    client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION, max_tokens=30)


def test_a_run_flagged_loop_is_refused_its_next_call(tmp_path):
    collector = WasteCollector(tmp_path, {"budgets": BUDGETS}).start()
    provider = exporting_provider(collector)
    # allowance_calls=0: every call asks the collector, so the block shows on the very next call
    guard = configure_budget_client(collector.grpc_endpoint, failure_policy="fail_closed",
                                    timeout_seconds=2.0, allowance_calls=0)
    cognocient_otel.instrument(tracer_provider=provider, guards=[guard])
    try:
        with LLMServer() as server:
            client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="test", max_retries=0)
            outcomes = {}
            for feature in ("e2e-guarded", "e2e-unguarded"):
                with cognocient_otel.run("reporter", feature=feature) as run:
                    for _ in range(3):
                        _ask(client, server)
                    assert provider.force_flush(10_000)
                    wait_for(lambda run=run: (collector.run(run.id) or {}).get("waste_flags"),
                             what=f"the loop flag of {feature}")
                    sent_before = server.request_count()
                    try:
                        _ask(client, server)
                        outcomes[feature] = "sent"
                    except BudgetExceeded as refused:
                        outcomes[feature] = f"refused: {refused}"
                    assert server.request_count() - sent_before == (1 if outcomes[feature] == "sent" else 0)
                outcomes[f"{feature} run"] = run.id
        assert provider.force_flush(10_000)
    finally:
        cognocient_otel.uninstrument()
        guard.close()
        provider.shutdown()

    try:
        assert outcomes["e2e-unguarded"] == "sent"
        assert outcomes["e2e-guarded"].startswith("refused")
        assert "reporter runaway guard" in outcomes["e2e-guarded"]
        guarded = collector.run(outcomes["e2e-guarded run"])
        assert guarded["status"] == "blocked"
        assert guarded["blocked_by"] == {"budget": "reporter runaway guard", "step": 3}
        assert [(flag["kind"], flag["step"]) for flag in guarded["waste_flags"]] == [("loop", 3)]
        unguarded_id = outcomes["e2e-unguarded run"]
        unguarded = wait_for(lambda: (r := collector.run(unguarded_id)) and r["steps"] == 4 and r,
                             what="the unguarded run's 4 calls")
        assert unguarded["status"] != "blocked"
        assert [(flag["kind"], flag["step"]) for flag in unguarded["waste_flags"]] == [("loop", 3)]
    finally:
        collector.stop()


@pytest.mark.parametrize("bad", [{"loop": {"repeats": 1}}, {"loop": {"repeatz": 3}}])
def test_a_bad_waste_section_stops_the_collector_with_the_field_named(tmp_path, bad):
    collector = WasteCollector(tmp_path, {"waste": bad})
    with pytest.raises(CollectorStartError, match=r"collector exited 2: .*waste\.loop\.repeat"):
        collector.start()
