"""The pipeline stage over the collector's real store, and the budget metrics in an exposition."""

from __future__ import annotations

from decimal import Decimal as D

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from collector import metric_catalog as catalog
from collector.budgets.config import parse_budgets
from collector.budgets.model import CheckRequest, Settlement
from collector.budgets.runtime import BudgetRuntime
from collector.model import SpanBatch, SpanRecord
from collector.rollup import RunState
from collector.store import Store, UnitOfWork

BUDGETS = parse_budgets(
    [
        {
            "name": "docs",
            "scope": "feature",
            "scope_value": "docs",
            "per_run_limit_usd": "0.50",
            "daily_limit_usd": 5,
            "monthly_limit_usd": 50,
        },
        {
            "name": "researcher",
            "scope": "agent",
            "scope_value": "researcher",
            "daily_limit_usd": 1,
            "enforcement": "warn",
        },
    ]
)


def llm(
    span_id: str, run_id: str, cost: str, step: int, feature: str | None = "docs", agent: str | None = None
):
    return SpanRecord(
        tenant="default",
        run_id=run_id,
        trace_id="ab" * 16,
        span_id=span_id,
        parent_span_id="",
        name="chat",
        kind=3,
        start_ns=1,
        end_ns=2,
        is_llm=True,
        feature=feature,
        agent=agent,
        cost_usd=D(cost),
        step=step,
    )


def ingest(store: Store, state: RunState, stage, records: list[SpanRecord]) -> None:
    uow = UnitOfWork(store, state)
    uow.begin()
    stage.consume(SpanBatch(records=records, uow=uow))
    uow.commit()


def test_stage_counts_in_the_batch_transaction_and_blocks_the_run(tmp_path, clock):
    path = str(tmp_path / "collector.db")
    store, state = Store(path), RunState()
    runtime = BudgetRuntime.build(BUDGETS, store_path=path, clock=clock)
    stage = runtime.stage_factory(None)
    stage.setup(store)
    # A call settled through a check first: its span must not count again.
    runtime.checker.check(
        CheckRequest(run_id="r1", tenant="default", feature="docs", estimated_cost_usd=D("0.2"), span_id="s1")
    )
    runtime.checker.check(CheckRequest(run_id="", tenant="default", settle=(Settlement("s1", D("0.2")),)))
    ingest(store, state, stage, [llm("s1", "r1", "0.2", 1), llm("s2", "r1", "0.2", 2)])
    ingest(store, state, stage, [llm("s2", "r1", "0.2", 2)])  # redelivered: once per span
    assert runtime.ledger.run_state(tenant="default", run_id="r1") == (D("0.4"), None)
    ingest(store, state, stage, [llm("s3", "r1", "0.15", 3), llm("n1", "r2", "0.01", 1, feature=None)])
    spent, block = runtime.ledger.run_state(tenant="default", run_id="r1")
    assert spent == D("0.55") and (block.budget, block.step) == ("docs", 3)
    run = store.load_run(("default", "r1"))
    assert run.status == "blocked" and run.blocked_by == {"budget": "docs", "step": 3}
    assert runtime.counters.blocked_runs.get(("docs", "docs", "")) == 1
    # A rolled-back batch leaves the ledger untouched (same transaction as the rollup).
    uow = UnitOfWork(store, state)
    uow.begin()
    stage.consume(SpanBatch(records=[llm("s9", "r3", "0.3", 1)], uow=uow))
    uow.rollback()
    assert runtime.ledger.run_state(tenant="default", run_id="r3") == (D(0), None)
    runtime.close()
    store.close()


def test_metrics_follow_the_catalog(tmp_path, clock):
    path = str(tmp_path / "collector.db")
    store, state = Store(path), RunState()
    runtime = BudgetRuntime.build(BUDGETS, store_path=path, clock=clock)
    stage = runtime.stage_factory(None)
    stage.setup(store)
    ingest(store, state, stage, [llm("a", "r1", "0.3", 1), llm("b", "r1", "0.3", 2, agent="researcher")])
    runtime.checker.check(
        CheckRequest(run_id="r1", tenant="default", feature="docs", estimated_cost_usd=D("0.1"), span_id="c")
    )
    registry = CollectorRegistry()
    registry.register(runtime.metrics)
    text = generate_latest(registry).decode()
    samples = {}
    declared = catalog.exposed_series_names()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert sample.name in declared, sample.name
            spec = declared[sample.name]
            assert set(sample.labels) == set(spec.labels), (sample.name, sample.labels)
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    assert (
        samples[
            ("cognocient_budget_spend_usd", (("budget", "docs"), ("scope", "feature"), ("window", "daily")))
        ]
        == 0.6
    )
    assert (
        samples[
            ("cognocient_budget_limit_usd", (("budget", "docs"), ("scope", "feature"), ("window", "monthly")))
        ]
        == 50
    )
    assert (
        samples[
            (
                "cognocient_budget_spend_usd",
                (("budget", "researcher"), ("scope", "agent"), ("window", "daily")),
            )
        ]
        == 0.3
    )
    assert samples[("cognocient_budget_per_run_limit_usd", (("budget", "docs"), ("scope", "feature")))] == 0.5
    assert samples[("cognocient_budget_decisions_total", (("budget", "docs"), ("decision", "block")))] == 1
    assert samples[("cognocient_budget_blocked_calls_total", (("budget", "docs"),))] == 1
    assert (
        samples[
            (
                "cognocient_budget_blocked_runs_total",
                (("agent", "researcher"), ("budget", "docs"), ("feature", "docs")),
            )
        ]
        == 1
    )
    runtime.close()
    store.close()


def test_stage_with_the_ledger_in_redis(tmp_path, clock, redis_url, monkeypatch):
    from collector.budgets.runtime import REDIS_URL_ENV

    monkeypatch.setenv(REDIS_URL_ENV, redis_url)
    path = str(tmp_path / "collector.db")
    store, state = Store(path), RunState()
    runtime = BudgetRuntime.build(BUDGETS, store_path=path, clock=clock)
    assert type(runtime.ledger.store).__name__ == "RedisLedgerStore"
    stage = runtime.stage_factory(None)
    stage.setup(store)
    run_id = f"redis-{id(runtime)}"
    ingest(store, state, stage, [llm("q1", run_id, "0.3", 1), llm("q2", run_id, "0.3", 2)])
    ingest(store, state, stage, [llm("q2", run_id, "0.3", 2)])  # redelivered
    spent, block = runtime.ledger.run_state(tenant="default", run_id=run_id)
    assert spent == D("0.6") and block.step == 2
    assert store.load_run(("default", run_id)).blocked_by == {"budget": "docs", "step": 2}
    answer = runtime.checker.check(
        CheckRequest(run_id=run_id, tenant="default", feature="docs", span_id="q3")
    )
    assert answer.decision == "block"
    runtime.close()
    store.close()
