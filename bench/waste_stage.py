"""What the waste and budget stages add to the collector's ingest, per span, against the core pipeline.

Runs the collector's real stages (dedup -> cost -> rollup -> [waste] -> [budget] -> commit) over a
real SQLite store in a temporary folder, for agent runs of `--steps` LLM calls each, exported in
batches of `--batch` spans, and prints the time per span of three pipelines (core; core + waste;
core + waste + budget, with two budgets that apply to every span), alternating, and their ratios
(the machine is noisy: absolute times are not stable, the ratio measured in one run is). Times are
the CPU time of the thread that runs the stages (`--clock cpu`, the default: other processes on a
shared machine change it far less than wall time, and the stages and commits run on that one
thread, SQLite's writes included) or wall time (`--clock wall`). Also
prints each stage's own time per span, the time of the commits, and the size of a run's stored
detector state at its longest.

    python bench/waste_stage.py [--runs 40] [--steps 50] [--batch 20] [--repeat 5] [--clock cpu|wall]

`--batch` spans of concurrent runs interleave (each span of a batch from a different run when
`--batch` <= `--runs`): the waste stage's work per run and batch, and its stored row per run and
batch, are then paid per span, the worst case.
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from cognocient_otel.pricing import PriceBook, TokenUsage
from collector.budgets.config import parse_budgets
from collector.budgets.runtime import BudgetRuntime
from collector.model import SpanBatch, SpanRecord
from collector.pipeline import Stage
from collector.rollup import RunState
from collector.stages import CommitStage, CostStage, DedupStage, RollupStage
from collector.stats import CollectorStats
from collector.store import Store, UnitOfWork
from collector.waste import WasteConfig
from collector.waste.stage import WasteStage

T0 = 1_800_000_000 * 10**9
PIPELINES = ("core", "waste", "waste+budget")
_USAGE = TokenUsage(input_tokens=1)
BUDGETS = [
    {"name": "bench per run", "scope": "feature", "scope_value": "bench", "per_run_limit_usd": 1000,
     "monthly_limit_usd": 1_000_000, "enforcement": "block"},
    {"name": "bench global", "scope": "global", "daily_limit_usd": 1_000_000, "enforcement": "warn"},
]


def _spans(runs: int, steps: int, seed: int) -> list[SpanRecord]:
    """Agent runs that append to their context each step (no flag): the detectors' steady-state work."""
    rng = random.Random(seed)
    span_ids = itertools.count(1)
    records = []
    for run in range(runs):
        trace_id = f"{run:032x}"
        tokens = rng.randint(800, 2000)
        for step in range(1, steps + 1):
            tokens += rng.randint(50, 400)
            span_id = f"{next(span_ids):016x}"
            records.append(SpanRecord(
                tenant="default", run_id=f"run-{run}", trace_id=trace_id, span_id=span_id,
                parent_span_id="1" * 16, name="chat gpt-4o-mini", kind=3,
                start_ns=T0 + step * 2 * 10**9, end_ns=T0 + (step * 2 + 1) * 10**9,
                is_llm=True, operation="chat", provider="openai", request_model="gpt-4o-mini",
                response_model="gpt-4o-mini", feature="bench", input_tokens=tokens, output_tokens=200,
                step=step, fingerprint=f"{run:04x}{step:06x}", has_explicit_run=True,
                dedup_key=bytes.fromhex(trace_id + span_id),
            ))
    # Spans of concurrent runs interleave at the collector.
    records.sort(key=lambda record: (record.start_ns, record.run_id))
    return records


_clock: Callable[[], float] = time.thread_time


class _Timed:
    """Adds up the time a stage's `process` takes."""

    def __init__(self, stage: Stage) -> None:
        self.seconds = 0.0
        process: Callable[[SpanBatch], None] = stage.process

        def timed(batch: SpanBatch) -> None:
            started = _clock()
            process(batch)
            self.seconds += _clock() - started

        stage.process = timed  # type: ignore[method-assign]


def _ingest(folder: Path, records: list[SpanRecord], batch: int, pipeline: str) -> dict[str, float]:
    path = folder / f"bench-{pipeline}-{time.monotonic_ns()}.db"
    store = Store(str(path))
    stats = CollectorStats()
    tail: Stage = CommitStage(stats=stats)
    budgets = None
    timers: dict[str, _Timed] = {}
    if pipeline == "waste+budget":
        budgets = BudgetRuntime.build(parse_budgets(BUDGETS), store_path=str(path))
        tail = budgets.stage_factory(tail)
        timers["budget"] = _Timed(tail)
    if pipeline != "core":
        tail = WasteStage(tail, config=WasteConfig(), price_book=PriceBook())
        timers["waste"] = _Timed(tail)
    price_book = PriceBook()
    head = DedupStage(CostStage(RollupStage(tail, stats=stats), price_book=price_book), stats=stats)
    for stage in head.stages():
        stage.setup(store)
    price_book.cost(model="gpt-4o-mini", usage=_USAGE, provider="openai")  # resolve before timing
    state = RunState()
    for record in records:
        record.cost_usd = None  # the cost stage fills it on each pass
    commit_seconds = 0.0
    started = _clock()
    for offset in range(0, len(records), batch):
        uow = UnitOfWork(store, state)
        uow.begin()
        head.consume(SpanBatch(records=records[offset:offset + batch], uow=uow))
        before_commit = _clock()
        uow.commit()
        commit_seconds += _clock() - before_commit
    result = {"total": _clock() - started, "commit": commit_seconds}
    result.update({name: timer.seconds for name, timer in timers.items()})
    if pipeline != "core":
        row = store.conn.execute(
            "SELECT max(size) FROM (SELECT sum(length(entry)) AS size FROM waste_entries GROUP BY run_id)"
        ).fetchone()
        result["largest_state_bytes"] = row[0] or 0
    if budgets is not None:
        budgets.close()
    store.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    args = parser.parse_args()
    global _clock
    _clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    records = _spans(args.runs, args.steps, seed=1)
    spans = len(records)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in PIPELINES}
    with tempfile.TemporaryDirectory() as folder:
        for name in PIPELINES:  # warm up: imports, prices, SQLite
            _ingest(Path(folder), records[:args.batch * 2], args.batch, name)
        for _ in range(args.repeat):  # alternate, so drift in machine load hits all alike
            for name in PIPELINES:
                results[name].append(_ingest(Path(folder), records, args.batch, name))

    def per_span(name: str, part: str) -> float:
        return statistics.median(result[part] for result in results[name]) / spans * 1e6

    print(f"{spans} spans, {args.runs} runs of {args.steps} steps, batches of {args.batch}, "
          f"median of {args.repeat}, {args.clock} time")
    base = per_span("core", "total")
    print(f"core pipeline (dedup, cost, rollup, commit): {base:8.1f} us/span (baseline; "
          f"commit {per_span('core', 'commit'):.1f})")
    for name in PIPELINES[1:]:
        total = per_span(name, "total")
        stages = ", ".join(f"{stage} stage {per_span(name, stage):.1f}"
                           for stage in ("waste", "budget") if stage in results[name][0])
        print(f"with {name + ':':13} {total:8.1f} us/span, ratio {total / base:.2f} "
              f"(adds {total - base:.1f} us/span: {stages}; commit {per_span(name, 'commit'):.1f})")
    largest = int(results["waste"][-1]["largest_state_bytes"])
    print(f"largest stored state of a run: {largest} bytes ({Decimal(largest) / args.steps:.0f} bytes/call)")

if __name__ == "__main__":
    main()
