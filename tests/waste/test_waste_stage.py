"""The waste stage in the collector's real pipeline (dedup -> cost -> rollup -> waste -> commit) over
a real SQLite store: flags land in the run's rollup in the batch's transaction, survive a restart,
count once in the metric, and `on_loop: block` marks the run blocked."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from waste_spans import RUN, growing, llm, tool

from cognocient_otel.pricing import PriceBook
from collector.budgets.config import parse_budgets
from collector.budgets.model import CheckRequest
from collector.budgets.runtime import BudgetRuntime
from collector.model import SpanBatch
from collector.pipeline import Stage
from collector.rollup import BLOCKED, RunState
from collector.stages import CommitStage, CostStage, DedupStage, RollupStage
from collector.stats import CollectorStats
from collector.store import Store, UnitOfWork
from collector.waste import WasteConfig, load_waste_config
from collector.waste.loop_block import loop_blockers_from
from collector.waste.stage import WasteStage
from tests.budgets.redis_server import running_redis

KEY = ("default", RUN)


class Pipeline:
    """The collector's stages over one store file, as the ingest writer runs them."""

    def __init__(self, path: Path, config: WasteConfig | None = None, budgets=(), redis_url=None,
                 cached_entries: int | None = None) -> None:
        self.store = Store(str(path))
        self.state = RunState()
        stats = CollectorStats()
        tail: Stage = CommitStage(stats=stats)
        self.budgets = None
        if budgets:  # the budgets part's own stage and ledger, in the same store file
            self.budgets = BudgetRuntime.build(budgets, store_path=str(path), redis_url=redis_url)
            tail = self.budgets.stage_factory(tail)
        # None: the stage's own default bound
        bound = {} if cached_entries is None else {"cached_entries": cached_entries}
        self.waste = WasteStage(tail, config=config or WasteConfig(), price_book=PriceBook(),
                                loop_blockers=loop_blockers_from(budgets), **bound)
        self.head = DedupStage(CostStage(RollupStage(self.waste, stats=stats), price_book=PriceBook()),
                               stats=stats)
        for stage in self.head.stages():
            stage.setup(self.store)

    def send(self, records, *, fail: bool = False) -> None:
        uow = UnitOfWork(self.store, self.state)
        uow.begin()
        try:
            self.head.consume(SpanBatch(records=list(records), uow=uow))
            if fail:
                raise RuntimeError("simulated failure before the commit")
            uow.commit()
        except RuntimeError:
            uow.rollback()

    def run(self):
        return self.state.get(KEY) or self.store.load_run(KEY)

    def flags(self) -> list[tuple[str, int]]:
        run = self.run()
        return [(flag["kind"], flag["step"]) for flag in run.waste_flags] if run else []

    def counted(self) -> dict:
        return dict(self.waste.flags_raised.items())

    def check(self, *, feature: str) -> str:
        """The budget check's decision for the run's next call."""
        request = CheckRequest(run_id=RUN, tenant="default", feature=feature, agent="",
                               estimated_cost_usd=Decimal("0.001"))
        return self.budgets.ledger.check(request).decision

    def close(self) -> None:
        if self.budgets is not None:
            self.budgets.close()
        self.store.close()


@pytest.fixture
def pipeline(tmp_path):
    opened = Pipeline(tmp_path / "collector.db")
    yield opened
    opened.close()


def _with_feature(records, feature="support-bot"):
    for record in records:
        record.feature = feature
    return records


def test_bloat_flag_lands_in_the_rollup_and_the_counter_once(pipeline):
    records = _with_feature(growing([1000, 1100, 1200, 2500, 5000, 10000, 20000]))
    for record in records:
        pipeline.send([record])
    pipeline.send(records)  # the exporter retries everything: duplicates change nothing
    [flag] = pipeline.run().waste_flags
    assert flag["kind"] == "context_bloat" and flag["step"] == 6
    assert flag["message"].startswith("Context bloat after step 3: input grew 8.3x over 3 steps")
    assert "wasted_cost_usd" in flag
    assert pipeline.counted() == {("support-bot", "context_bloat"): 1.0}


def test_state_and_flags_survive_a_restart(tmp_path):
    path = tmp_path / "collector.db"
    first = Pipeline(path)
    records = _with_feature([llm(step, fingerprint="same" if step in (2, 4, 7) else f"f{step}")
                             for step in range(1, 8)])
    first.send(records[:5])  # two of the three repeats
    assert first.flags() == []
    first.close()
    second = Pipeline(path)  # a new process: nothing in memory
    second.send(records[5:])
    assert second.flags() == [("loop", 7)]
    second.send([llm(step, fingerprint="same") for step in range(8, 11)])
    assert second.flags() == [("loop", 7)]  # once per run and kind
    assert second.counted() == {("support-bot", "loop"): 1.0}
    second.close()


def test_runs_evicted_from_the_memory_cache_are_read_back_from_the_store(tmp_path):
    pipeline = Pipeline(tmp_path / "collector.db", cached_entries=3)
    other = [llm(step, fingerprint="other") for step in range(1, 3)]
    for record in other:
        record.run_id = "run-2"
    mine = _with_feature([llm(step, fingerprint="same") for step in range(1, 4)])
    for record in (mine[0], other[0], mine[1], other[1], mine[2]):  # interleaved, one per batch
        pipeline.send([record])
    assert pipeline.flags() == [("loop", 3)]
    assert len(pipeline.waste._cache) <= 2
    pipeline.close()


def test_a_failed_transaction_leaves_no_state_behind(pipeline):
    records = _with_feature([llm(step, fingerprint="same") for step in range(1, 4)])
    pipeline.send(records[:2], fail=True)  # rolled back: neither counted nor remembered
    pipeline.send(records[2:])
    assert pipeline.flags() == []
    assert pipeline.counted() == {}
    pipeline.send(records[:2])  # the client's retry
    assert pipeline.flags() == [("loop", 3)]


def test_all_three_kinds_then_nothing_more_is_kept(pipeline):
    records = _with_feature(growing([1000, 1100, 1200, 2500, 5000, 10000, 20000]))
    records += [llm(8, fingerprint="fp7"), llm(9, fingerprint="fp7")]
    records += [llm(step, error_type="429") for step in range(10, 15)]
    pipeline.send(records)
    assert pipeline.flags() == [("context_bloat", 6), ("loop", 9), ("retry_storm", 14)]
    rows = pipeline.store.conn.execute("SELECT count(*) FROM waste_entries").fetchone()[0]
    assert rows == 0
    pipeline.send([llm(step, fingerprint="fp7") for step in range(15, 19)])
    assert pipeline.store.conn.execute("SELECT count(*) FROM waste_entries").fetchone()[0] == 0
    assert len(pipeline.run().waste_flags) == 3


def test_tool_loops_are_seen_through_the_pipeline(pipeline):
    records = _with_feature([llm(1, fingerprint="a")])
    records += [tool("lookup_order", "h1", at=3.0 + step) for step in range(3)]
    pipeline.send(records)
    assert pipeline.flags() == [("loop", 1)]


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory) -> Iterator[str]:
    """A real redis-server on a free port, for the budget ledger kept in Redis."""
    with running_redis(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.mark.parametrize("ledger", ["sqlite", "redis"])
def test_on_loop_block_blocks_the_run_in_the_rollup_and_for_the_budget_check(tmp_path, request, ledger):
    budgets = parse_budgets([
        {"name": "other feature", "scope": "feature", "scope_value": "billing", "per_run_limit_usd": 5,
         "on_loop": "block"},
        {"name": "support runaway guard", "scope": "feature", "scope_value": "support-bot",
         "per_run_limit_usd": 5, "on_loop": "block"},
    ])
    url = request.getfixturevalue("redis_url") if ledger == "redis" else None
    pipeline = Pipeline(tmp_path / "collector.db", budgets=budgets, redis_url=url)
    pipeline.send(_with_feature([llm(step, fingerprint="same") for step in range(1, 3)]))
    assert pipeline.check(feature="support-bot") == "allow"
    pipeline.send(_with_feature([llm(3, fingerprint="same")]))
    run = pipeline.run()
    assert run.status == BLOCKED
    assert run.blocked_by == {"budget": "support runaway guard", "step": 3}
    answer = pipeline.budgets.ledger.check(CheckRequest(run_id=RUN, tenant="default", feature="support-bot"))
    assert answer.decision == "block"
    assert answer.reason == "run is blocked by budget 'support runaway guard' since step 3"
    pipeline.close()


def test_without_on_loop_a_loop_does_not_block(tmp_path):
    budgets = parse_budgets([{"name": "guard", "scope": "feature", "scope_value": "support-bot",
                              "per_run_limit_usd": 5}])
    pipeline = Pipeline(tmp_path / "collector.db", budgets=budgets)
    pipeline.send(_with_feature([llm(step, fingerprint="same") for step in range(1, 4)]))
    assert pipeline.flags() == [("loop", 3)]
    assert pipeline.run().status != BLOCKED
    assert pipeline.check(feature="support-bot") == "allow"
    pipeline.close()


def test_a_corrupt_state_row_is_dropped_not_fatal(pipeline):
    pipeline.send(_with_feature([llm(1, fingerprint="x")]))
    pipeline.store.conn.execute("UPDATE waste_entries SET entry = 'garbage'")
    pipeline.send(_with_feature([llm(step, fingerprint="y") for step in range(2, 5)]))
    assert pipeline.flags() == [("loop", 4)]


def test_disabled_detection_writes_nothing(tmp_path):
    pipeline = Pipeline(tmp_path / "collector.db", load_waste_config({"enabled": False}))
    pipeline.send(_with_feature([llm(step, fingerprint="same") for step in range(1, 6)]))
    assert pipeline.flags() == []
    assert pipeline.store.conn.execute("SELECT count(*) FROM waste_entries").fetchone()[0] == 0
    pipeline.close()


_FIRST_FORMAT = """
CREATE TABLE waste_entries (
    tenant TEXT NOT NULL, run_id TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL,
    entry TEXT NOT NULL, updated REAL NOT NULL, PRIMARY KEY (tenant, run_id, seq)
) WITHOUT ROWID;
CREATE INDEX waste_entries_by_updated ON waste_entries (updated);
"""


def test_a_store_of_the_first_format_is_migrated_and_its_runs_go_on(tmp_path):
    path = tmp_path / "collector.db"
    first = Pipeline(path)
    first.send(_with_feature([llm(step, fingerprint="same" if step != 2 else "other") for step in (1, 2)]))
    first.close()
    # Rewrite the stored state as the first format wrote it: a WITHOUT ROWID table, a row per call.
    store = Store(str(path))
    store.conn.executescript("DROP TABLE waste_entries;" + _FIRST_FORMAT)
    rows = [("default", RUN, seq, "c", f'[{seq + 1},{1_800_000_000 * 10**9 + seq},1000,"0.0001","0.001",'
             f'null,"{"same" if seq == 0 else "other"}",128000]', 1.0) for seq in range(2)]
    store.conn.executemany("INSERT INTO waste_entries VALUES (?, ?, ?, ?, ?, ?)", rows)
    store.close()
    second = Pipeline(path)
    assert second.store.conn.execute("SELECT count(*) FROM waste_entries").fetchone()[0] == 2
    second.send(_with_feature([llm(3, fingerprint="same")]))
    assert second.flags() == []  # two of the three
    second.send(_with_feature([llm(4, fingerprint="same")]))
    assert second.flags() == [("loop", 4)]
    [sql] = second.store.conn.execute("SELECT sql FROM sqlite_master WHERE name = 'waste_entries'").fetchone()
    assert "WITHOUT ROWID" not in sql.upper()
    second.close()


def test_a_finished_run_leaves_memory_and_its_late_spans_read_it_back(pipeline):
    root = tool("ignored", None, at=0.0)  # an invoke_agent root span that ends the run
    root.operation, root.name, root.parent_span_id = "invoke_agent", "invoke_agent a", ""
    root.is_run_root = root.has_explicit_run = True
    pipeline.send(_with_feature([llm(step, fingerprint="same") for step in (1, 2)]))
    assert KEY in pipeline.waste._cache
    pipeline.send([root])
    assert KEY not in pipeline.waste._cache  # finished: its state is in the store only
    pipeline.send(_with_feature([llm(3, fingerprint="same")]))  # a late span of the finished run
    assert pipeline.flags() == [("loop", 3)]


def test_a_rolled_back_batch_undoes_its_changes_to_a_state_in_memory(pipeline):
    pipeline.send(_with_feature([llm(step, fingerprint="same") for step in (1, 2)]))
    state = pipeline.waste._cache[KEY]
    before = (list(state.calls), state.raised)
    pipeline.send(_with_feature([llm(3, fingerprint="same")]), fail=True)
    pipeline.send([])  # the next transaction restores what the failed one changed
    pipeline.send(_with_feature([llm(3, fingerprint="other")]))
    assert (state.calls[:2], state.raised) == before
    assert [call.step for call in state.calls] == [1, 2, 3] and pipeline.flags() == []
