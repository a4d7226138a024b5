"""The stage interface: OpenTelemetry-Collector style processors over a `SpanBatch`.

Extension point (issues 4 and 5). A stage is given the next stage at construction and implements
`process(batch)`; the shared `Stage.consume` (the Collector's `processorhelper`) times it, counts
the spans that came in and went out, then hands the batch to `self.next`:

    class WasteStage(Stage):
        name = "waste"

        def setup(self, store: Store) -> None:          # once at start, on the writer thread
            store.executescript("CREATE TABLE IF NOT EXISTS waste_state (...)")

        def process(self, batch: SpanBatch) -> None:    # on the writer thread, inside the transaction
            for record in batch.records:                # already deduplicated, costed, rolled up
                ...
                batch.uow.add_waste_flag(record.run_key, kind="loop", step=..., message=...)

The order is fixed by `collector/app.py`:

    decode (receivers) -> dedup -> cost -> rollup -> [waste] -> [budget] -> commit

and every stage after decode runs on the single ingest writer thread inside the transaction of
the batch (`batch.uow`, see `collector/store.py`), so whatever a stage writes through the unit of
work is committed together with the dedup marks and the rollup, or not at all. A stage that
raises fails its batch (the client gets an error and retries; nothing of it was committed): raise
only for a bug, never for bad span data, which a stage must tolerate.

Extra stages come from plugins (`collector/plugins.py`): before `start()`, a plugin calls
`collector.add_stage(factory, order=N)`, each factory being `Callable[[Stage], Stage]` (given
`next`, returns the stage); they run between rollup and commit in ascending `order` (waste 100,
then budgets).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from collector.model import SpanBatch
from collector.store import Store
from collector.telemetry import CounterVec, HistogramVec


class StageMetrics:
    """Shared by every stage: spans in and out per stage, and processing time per stage."""

    def __init__(self, latency_buckets: tuple[float, ...]) -> None:
        self.spans = CounterVec()  # (stage, direction)
        self.seconds = HistogramVec(latency_buckets)  # (stage,)


class Stage:
    """One processing step. Subclasses set `name` and override `process` (and maybe `setup`)."""

    name = "stage"

    def __init__(self, next: Stage | None = None, *, metrics: StageMetrics | None = None) -> None:
        self.next = next
        self.metrics = metrics

    def setup(self, store: Store) -> None:
        """Called once on the writer thread before the first batch (create tables, load state)."""

    def process(self, batch: SpanBatch) -> None:
        """Change `batch` (records, rollups through `batch.uow`); must not call `self.next`."""

    def consume(self, batch: SpanBatch) -> None:
        metrics = self.metrics
        if metrics is None:
            self.process(batch)
        else:
            spans_in = len(batch.records)
            started = time.perf_counter()
            self.process(batch)
            metrics.seconds.observe((self.name,), time.perf_counter() - started)
            metrics.spans.inc_many({(self.name, "in"): spans_in, (self.name, "out"): len(batch.records)})
        if self.next is not None:
            self.next.consume(batch)

    def stages(self) -> list[Stage]:
        """This stage and every stage after it."""
        chain: list[Stage] = []
        stage: Stage | None = self
        while stage is not None:
            chain.append(stage)
            stage = stage.next
        return chain


StageFactory = Callable[[Stage], Stage]
"""Builds a stage given the stage that follows it."""
