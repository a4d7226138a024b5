"""End to end (real collector, real openai SDK, the fake LLM server): when a run ends in this
process, the remote guard gives its allowance back at once, not after an idle timeout.

The guard here never releases for idleness (an hour) and never flushes on a timer (a minute), so
only the run's end can free the allowance; the next check shows it in the window's remaining.
"""

from __future__ import annotations

import time
from decimal import Decimal

import openai
import pytest
from opentelemetry.sdk.trace import TracerProvider

import cognocient_otel
from cognocient_otel.budget_client import BudgetClient, RemoteBudgetGuard
from cognocient_otel.testing import LLMServer

from .e2e import MESSAGES, start_collector

LIMIT = Decimal("10")
MONTHLY = [
    {
        "name": "document-processor monthly",
        "scope": "feature",
        "scope_value": "document-processor",
        "monthly_limit_usd": str(LIMIT),
        "enforcement": "block",
    },
]


@pytest.fixture
def setup(tmp_path):
    collector = start_collector(tmp_path, MONTHLY)
    client = BudgetClient(f"127.0.0.1:{collector.grpc_port}", timeout_seconds=5)
    guard = RemoteBudgetGuard(client, allowance_calls=4, flush_interval_seconds=60, idle_release_seconds=3600)
    provider = TracerProvider()  # spans stay here: the checks alone feed the ledger
    cognocient_otel.instrument(tracer_provider=provider, guards=[guard])
    with LLMServer() as llm:
        sdk = openai.OpenAI(base_url=llm.base_url + "/v1", api_key="test", max_retries=0)
        try:
            yield collector, guard, sdk
        finally:
            cognocient_otel.uninstrument()
            guard.close()
            client.close()
            provider.shutdown()
            collector.stop(grace=2)


def window_remaining(guard: RemoteBudgetGuard, probe: str) -> Decimal:
    """What a check of the feature (estimate 0, its own run) sees left in the monthly window."""
    answer = guard.client.check(run_id=probe, feature="document-processor", agent="probe")
    assert answer.reachable and answer.window_remaining_usd is not None, answer
    return answer.window_remaining_usd


def test_a_run_ending_releases_its_allowance_for_the_next_check(setup) -> None:
    _collector, guard, sdk = setup
    with cognocient_otel.run("summariser", feature="document-processor") as run:
        sdk.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=4000)
        spent = run.cost_usd
        assert spent > 0
        held = LIMIT - spent - window_remaining(guard, "probe-during")
        # The allowance granted for the run's next calls (4 more calls' estimates) is still held.
        assert held > spent

    started = time.monotonic()
    after = window_remaining(guard, "probe-after")
    assert time.monotonic() - started < 1  # no idle timeout was waited for
    assert after == pytest.approx(LIMIT - spent, abs=Decimal("1e-9"))


def test_the_release_reaches_the_collector_without_another_check_from_this_process(setup) -> None:
    """The run's end wakes the background flush: another process (here a plain HTTP client
    with a fresh connection) sees the headroom again within a moment, not a minute."""
    import httpx

    collector, _guard, sdk = setup
    with cognocient_otel.run("summariser", feature="document-processor") as run:
        sdk.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=4000)
        spent = run.cost_usd
    url = f"http://127.0.0.1:{collector.http_port}/v1/budget/check"
    deadline = time.monotonic() + 5
    while True:
        body = {"run_id": "other-process", "feature": "document-processor", "agent": "probe"}
        answer = httpx.post(url, json=body, timeout=5).json()
        if Decimal(str(answer["window_remaining_usd"])) == pytest.approx(LIMIT - spent, abs=Decimal("1e-9")):
            break
        assert time.monotonic() < deadline, f"allowance still held 5 s after the run ended: {answer}"
        time.sleep(0.05)
