"""A run whose spans straddle a collector restart: the detector state committed before the restart
is resumed from the store, the flag is raised once, and it is still there after another restart."""

from __future__ import annotations

import openai
from waste_e2e import WasteCollector, exporting_provider, wait_for

import cognocient_otel
from cognocient_otel.testing import LLMServer, ScriptedResponse

RUN_ID = "resumed-run-0001"
QUESTION = [{"role": "user", "content": "Has the invoice been paid?"}]


def _agent_part(collector: WasteCollector, server: LLMServer, calls: int) -> None:
    """One process's part of the run: `calls` times the same question, exported to `collector`."""
    provider = exporting_provider(collector)
    cognocient_otel.instrument(tracer_provider=provider)
    try:
        client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="test", max_retries=0)
        with cognocient_otel.run("billing-agent", feature="e2e-restart", run_id=RUN_ID):
            for _ in range(calls):
                server.script([ScriptedResponse(input_tokens=1500, output_tokens=40, text="not yet")])
                client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION, max_tokens=40)
        assert provider.force_flush(10_000)
    finally:
        cognocient_otel.uninstrument()
        provider.shutdown()


def test_detector_state_and_flags_survive_collector_restarts(tmp_path):
    collector = WasteCollector(tmp_path, {})
    with LLMServer() as server:
        collector.start()
        try:
            _agent_part(collector, server, calls=2)
            wait_for(lambda: (collector.run(RUN_ID) or {}).get("steps") == 2, what="the first two calls")
            assert collector.run(RUN_ID)["waste_flags"] == []
        finally:
            collector.stop()

        collector.start()  # a new process on the same store: nothing in memory
        try:
            _agent_part(collector, server, calls=1)  # the run resumed in another agent process
            run = wait_for(lambda: (r := collector.run(RUN_ID)) and r["steps"] == 3 and r,
                           what="the third call")
            [flag] = run["waste_flags"]
            # both agent processes numbered their calls from 1: the run is ordered by start time
            assert (flag["kind"], flag["step"]) == ("loop", 3)
            assert flag["message"].startswith(
                "Loop at step 3: the same request was sent 3 times (first at step 1)")
            assert collector.waste_flag_counts() == {("e2e-restart", "loop"): 1.0}
        finally:
            collector.stop()

    collector.start()
    try:
        assert collector.run(RUN_ID)["waste_flags"] == [flag]
        assert [run["run_id"] for run in collector.runs(flag="loop")] == [RUN_ID]
        assert collector.waste_flag_counts() == {}  # counted by the process that raised it
    finally:
        collector.stop()
