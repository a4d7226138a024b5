"""What waste detection adds to the collector's ingest: the pipeline with and without the waste stage.

Runs the collector's real stages (dedup -> cost -> rollup -> [waste] -> commit) over a real SQLite
store in a temporary folder, for agent runs of `--steps` LLM calls each, exported in batches of
`--batch` spans, and prints the time per span of both pipelines and their ratio (the machine is
noisy: absolute times are not stable, the ratio measured in one run is). Also prints the size of a
run's stored detector state at its longest.

    python bench/waste_stage.py [--runs 40] [--steps 50] [--batch 20] [--repeat 3]
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from cognocient_otel.pricing import PriceBook
from collector.model import SpanBatch, SpanRecord
from collector.rollup import RunState
from collector.stages import CommitStage, CostStage, DedupStage, RollupStage
from collector.stats import CollectorStats
from collector.store import Store, UnitOfWork
from collector.waste import WasteConfig
from collector.waste.stage import WasteStage

T0 = 1_800_000_000 * 10**9


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


def _pipeline(store: Store, with_waste: bool) -> tuple[DedupStage, WasteStage | None]:
    stats = CollectorStats()
    tail = CommitStage(stats=stats)
    waste = None
    if with_waste:
        waste = tail = WasteStage(tail, config=WasteConfig(), price_book=PriceBook())
    head = DedupStage(CostStage(RollupStage(tail, stats=stats), price_book=PriceBook()), stats=stats)
    for stage in head.stages():
        stage.setup(store)
    return head, waste


def _ingest_seconds(
    folder: Path, records: list[SpanRecord], batch: int, with_waste: bool
) -> tuple[float, int]:
    store = Store(str(folder / f"bench-{with_waste}-{time.monotonic_ns()}.db"))
    head, _ = _pipeline(store, with_waste)
    state = RunState()
    for record in records:
        record.cost_usd = None  # the cost stage fills it on each pass
    started = time.perf_counter()
    for offset in range(0, len(records), batch):
        uow = UnitOfWork(store, state)
        uow.begin()
        head.consume(SpanBatch(records=records[offset:offset + batch], uow=uow))
        uow.commit()
    elapsed = time.perf_counter() - started
    largest = 0
    if with_waste:
        row = store.conn.execute(
            "SELECT max(size) FROM (SELECT sum(length(entry)) AS size FROM waste_entries GROUP BY run_id)"
        ).fetchone()
        largest = row[0] or 0
    store.close()
    return elapsed, largest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    records = _spans(args.runs, args.steps, seed=1)
    without, with_waste, largest = [], [], 0
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.repeat):  # alternate, so drift in machine load hits both alike
            without.append(_ingest_seconds(Path(folder), records, args.batch, False)[0])
            seconds, largest = _ingest_seconds(Path(folder), records, args.batch, True)
            with_waste.append(seconds)
    spans = len(records)
    base = statistics.median(without) / spans
    waste = statistics.median(with_waste) / spans
    print(f"{spans} spans, {args.runs} runs of {args.steps} steps, batches of {args.batch}, "
          f"median of {args.repeat}")
    print(f"pipeline without waste stage: {base * 1e6:8.1f} us/span (baseline)")
    print(f"pipeline with waste stage:    {waste * 1e6:8.1f} us/span")
    print(f"ratio with/without: {waste / base:.2f}x  (waste stage adds {(waste - base) * 1e6:.1f} us/span)")
    print(f"largest stored state of a run: {largest} bytes ({Decimal(largest) / args.steps:.0f} bytes/call)")


if __name__ == "__main__":
    main()
