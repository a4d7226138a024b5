"""End to end (real collector, real openai SDK, the fake LLM server): per-run limits stop the
runaway run only, scope limits refuse a feature until next month, overshoot is bounded."""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from decimal import Decimal

import pytest

import cognocient_otel
from cognocient_otel import BudgetExceeded
from cognocient_otel.testing import LLMServer, ScriptedResponse

from .e2e import Agent, EpochClock, http_get, requests_of_run, start_collector, wait_for_run

PER_RUN = [
    {
        "name": "document-processor per run",
        "scope": "feature",
        "scope_value": "document-processor",
        "monthly_limit_usd": 200,
        "per_run_limit_usd": "0.50",
        "enforcement": "block",
    },
]


@pytest.fixture
def llm():
    with LLMServer() as server:
        yield server


@pytest.fixture
def harness(tmp_path, llm):
    started = []

    def make(budgets, clock=None, **agent_options):
        collector = start_collector(tmp_path, budgets, clock)
        agent = Agent(collector, llm, **agent_options)
        started.append((collector, agent))
        return collector, agent

    yield make
    for collector, agent in started:
        agent.close()
        collector.stop(grace=2)


def test_runaway_run_is_blocked_and_the_other_run_finishes(harness, llm):
    collector, agent = harness(PER_RUN)
    outcome: dict[str, object] = {}

    def runaway() -> None:
        with cognocient_otel.run("summariser", feature="document-processor") as run:
            outcome["runaway_id"] = run.id
            try:
                for _ in range(40):  # a loop that would never stop by itself
                    agent.chat()
            except BudgetExceeded as refused:
                outcome["refused"] = refused
                outcome["blocked_step"] = run.steps
            outcome["runaway_cost"] = run.cost_usd

    def steady() -> None:
        with cognocient_otel.run("summariser", feature="document-processor") as run:
            outcome["steady_id"] = run.id
            for _ in range(5):
                agent.chat(max_tokens=2000)
            outcome["steady_steps"] = run.steps

    threads = [threading.Thread(target=runaway), threading.Thread(target=steady)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    refused = outcome["refused"]
    assert isinstance(refused, BudgetExceeded)
    blocked_step = outcome["blocked_step"]
    sent = blocked_step - 1
    # gpt-4o with max_tokens=4000 costs about $0.04: the run is stopped after 12 calls, at the
    # 13th, the first whose estimate would cross $0.50; that request never reached the server.
    assert sent == 12
    assert requests_of_run(llm, outcome["runaway_id"]) == sent
    runaway_cost = outcome["runaway_cost"]
    assert runaway_cost <= Decimal("0.50") < runaway_cost + refused.estimate_usd
    assert refused.limit_usd == Decimal("0.5") and "document-processor per run" in refused.reason
    # The other run of the same feature finished all its steps.
    assert outcome["steady_steps"] == 5 and requests_of_run(llm, outcome["steady_id"]) == 5

    agent.provider.force_flush()
    blocked = wait_for_run(collector, outcome["runaway_id"], steps=sent)
    assert blocked["status"] == "blocked"
    assert blocked["blocked_by"] == {"budget": "document-processor per run", "step": blocked_step}
    assert Decimal(blocked["cost_usd_exact"]) == runaway_cost
    steady = wait_for_run(collector, outcome["steady_id"], steps=5)
    assert steady["status"] != "blocked"
    metrics = http_get_metrics(collector)
    assert 'cognocient_budget_blocked_calls_total{budget="document-processor per run"} 1.0' in metrics
    assert (
        'cognocient_budget_per_run_limit_usd{budget="document-processor per run",scope="feature"} 0.5'
        in metrics
    )


def http_get_metrics(collector) -> str:
    import httpx

    return httpx.get(f"http://127.0.0.1:{collector.metrics_port}/metrics", timeout=5).text


def test_feature_over_its_monthly_limit_is_refused_until_next_month(harness, llm):
    clock = EpochClock(datetime(2026, 3, 31, 22, 0, tzinfo=timezone.utc))
    budgets = [
        {
            "name": "reports monthly",
            "scope": "feature",
            "scope_value": "reports",
            "monthly_limit_usd": "0.20",
        },
        {"name": "search monthly", "scope": "feature", "scope_value": "search", "monthly_limit_usd": 100},
    ]
    _collector, agent = harness(budgets, clock)
    reports_calls = 0
    with pytest.raises(BudgetExceeded) as refused:  # several runs of the feature share the month
        for _ in range(10):
            with cognocient_otel.run("writer", feature="reports"):
                agent.chat()
                agent.chat()
                reports_calls += 2
    assert reports_calls == 4 and "reports monthly" in refused.value.reason
    assert "monthly window 2026-03" in refused.value.reason
    # Another feature goes on.
    with cognocient_otel.run("searcher", feature="search") as run:
        agent.chat()
        agent.chat()
    assert run.steps == 2
    # A check between steps: a small step still fits, a step like the refused one does not.
    with cognocient_otel.run("writer", feature="reports") as run:
        assert run.check(estimated_cost_usd="0.01").decision == "allow"
        with pytest.raises(BudgetExceeded) as checked:
            run.check(estimated_cost_usd="0.05")
    assert "reports monthly" in checked.value.reason
    requests_before = llm.request_count()

    clock.set(datetime(2026, 4, 1, 0, 0, 5, tzinfo=timezone.utc))
    with cognocient_otel.run("writer", feature="reports") as run:
        assert run.check(estimated_cost_usd="0.01").decision == "allow"
        assert cognocient_otel.check_budget(estimated_cost_usd="0.05").window == "monthly 2026-04"
        agent.chat()
    assert llm.request_count() == requests_before + 1


def test_overshoot_with_and_without_max_tokens(harness, llm):
    budgets = [{"name": "tight run", "scope": "feature", "scope_value": "tight", "per_run_limit_usd": "0.10"}]
    _collector, agent = harness(budgets)

    def spend(max_tokens, scripted_output):
        with cognocient_otel.run("tight-agent", feature="tight") as run:
            try:
                for _ in range(50):
                    if scripted_output:
                        llm.script([ScriptedResponse(output_tokens=scripted_output)])
                    agent.chat(max_tokens=max_tokens)
            except BudgetExceeded as refused:
                assert "tight run" in refused.reason
            return run.cost_usd, run.steps - 1

    # max_tokens bounds each call: the estimate is an upper bound, the limit is never crossed.
    with_cap, calls_with_cap = spend(1000, None)
    assert with_cap <= Decimal("0.10") and calls_with_cap == 9
    # Without max_tokens the estimate assumes 1024 output tokens; these calls answer 4000, so
    # the run crosses the limit, by less than the cost of one call.
    llm.clear()
    without_cap, calls_without_cap = spend(None, 4000)
    one_call = without_cap / calls_without_cap
    assert Decimal("0.10") < without_cap <= Decimal("0.10") + one_call
    print(
        f"overshoot: max_tokens=1000 spent {with_cap} of $0.10 in {calls_with_cap} calls; "
        f"no max_tokens spent {without_cap} in {calls_without_cap} calls (one call ${one_call})"
    )


def test_http_check_on_the_collector(tmp_path):
    import httpx

    collector = start_collector(tmp_path, PER_RUN)
    try:
        url = f"http://127.0.0.1:{collector.http_port}/v1/budget/check"
        body = {
            "run_id": "h1",
            "feature": "document-processor",
            "agent": "a",
            "estimated_cost_usd": 0.3,
            "span_id": "00000000000000a1",
            "step": 1,
        }
        first = httpx.post(url, json=body, timeout=5)
        assert first.status_code == 200 and first.json()["decision"] == "allow"
        assert first.json()["run_remaining_usd"] == pytest.approx(0.2)
        second = httpx.post(url, json={**body, "span_id": "00000000000000a2", "step": 2}, timeout=5)
        assert second.status_code == 200 and second.json()["decision"] == "block"
        assert second.json()["budget"] == "document-processor per run"
        bad = httpx.post(
            url, content=b'{"feature": "x"}', headers={"Content-Type": "application/json"}, timeout=5
        )
        assert bad.status_code == 400 and bad.json() == {
            "error": "run_id: required (the run's id, cognocient.run.id)"
        }
        # The block shows in the runs API, with the step at which it happened.
        run = http_get(collector, "/v1/runs/h1").json()
        assert run["status"] == "blocked" and run["blocked_by"] == {
            "budget": "document-processor per run",
            "step": 2,
        }
    finally:
        collector.stop(grace=2)


def test_runaway_run_blocked_with_the_ledger_in_redis(tmp_path, llm, redis_url, monkeypatch):
    from collector.budgets.runtime import REDIS_URL_ENV

    monkeypatch.setenv(REDIS_URL_ENV, redis_url)
    name = f"redis per run {tmp_path.name}"  # Redis outlives the test: keys of its own
    collector = start_collector(tmp_path, [{**PER_RUN[0], "name": name}])
    agent = Agent(collector, llm)
    try:
        with (
            cognocient_otel.run("summariser", feature="document-processor") as run,
            pytest.raises(BudgetExceeded),
        ):
            for _ in range(40):
                agent.chat()
        assert run.steps == 13 and requests_of_run(llm, run.id) == 12
        assert run.cost_usd <= Decimal("0.50")
        agent.provider.force_flush()
        blocked = wait_for_run(collector, run.id, steps=12)
        assert blocked["blocked_by"] == {"budget": name, "step": 13}
    finally:
        agent.close()
        collector.stop(grace=2)
