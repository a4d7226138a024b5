"""The collector's own stages: dedup -> cost -> rollup -> ... -> commit (see `collector/pipeline.py`)."""

from __future__ import annotations

import sqlite3
import sys
from decimal import Decimal
from operator import attrgetter

from cognocient_otel.pricing import PriceBook, TokenUsage
from collector import attributes as attr
from collector.key_blocks import blocks, select_present, split_block
from collector.model import SpanBatch, SpanRecord
from collector.pipeline import Stage
from collector.rollup import ACTIVE, EXPIRED, FINISHED, RunRollup
from collector.stats import UNKNOWN, CollectorStats
from collector.store import CLEAR_RECENT_MARKS, MOVE_MARKS, Store, UnitOfWork

# Recent marks are moved into `spans_seen` once this many have committed: the move inserts them
# in key order, so each page of `spans_seen` it touches is written once for many marks, not once
# per mark. The keys are held in memory meanwhile (about 6 MB at the limit).
SETTLE_AFTER = 50_000
_FIND_SEEN = select_present("spans_seen", "k")
_DEDUP_KEY = attrgetter("dedup_key")
_RUN_KEY = attrgetter("tenant", "run_id")
_INSERT_BLOCK = "INSERT INTO spans_recent_blocks (keys, width, t) VALUES (?, ?, ?)"


class DedupStage(Stage):
    """Drops spans already counted, durably: each (start time, trace id, span id) passes once.

    Marks live in two tables, both written in the batch's transaction (a span is marked exactly
    when its effect commits, and the marks survive kill -9 like the rollups):

    * `spans_recent_blocks`: the marks of the latest batches, one row per batch (the batch's new
      keys joined into one BLOB), appended in arrival order, so a commit writes the few pages at
      its end. Their keys are also held in memory (`_recent`, loaded from the table at start),
      which is where a re-delivery of a recent span is found.
    * `spans_seen`: every older mark, keyed by the mark (start time + ids). A batch only reads it
      (one indexed lookup per key, all in one statement). Once `settle_after` recent marks have
      committed, they are moved there in key order, inside a batch's transaction.

    Marking the keys straight into `spans_seen` dirtied one page per span at random places of
    the index (spans start at any time within the last minute or so), so the commit wrote more
    pages as the table grew (docs/collector.md "Numbers").
    """

    name = "dedup"

    def __init__(
        self, next: Stage | None = None, *, stats: CollectorStats, settle_after: int = SETTLE_AFTER
    ) -> None:
        super().__init__(next)
        self.stats = stats
        self.settle_after = settle_after
        self._last_stamp = 0
        self._conn: sqlite3.Connection | None = None  # the store `_recent` was loaded from
        self._recent: set[bytes] = set()  # keys of the committed rows of spans_recent_blocks
        self._pending: set[bytes] = set()  # keys marked in the open transaction
        self._pending_uow: UnitOfWork | None = None

    def setup(self, store: Store) -> None:
        self._load(store.conn)

    def _load(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._recent = set()
        for keys, width in conn.execute("SELECT keys, width FROM spans_recent_blocks"):
            self._recent.update(split_block(keys, width))

    def _stamp(self, now: float) -> int:
        stamp = max(int(now * 1_000_000), self._last_stamp + 1)
        self._last_stamp = stamp
        return stamp

    def process(self, batch: SpanBatch) -> None:
        records = batch.records
        uow = batch.uow
        if not records or uow is None:
            return
        conn = uow.conn
        if conn is not self._conn:
            self._load(conn)
        if uow is not self._pending_uow:
            # A new transaction: the previous one committed (its keys are in `_recent` by now)
            # or rolled back (its keys were never written).
            self._pending_uow = uow
            self._pending = set()
            if len(self._recent) >= self.settle_after:
                self._settle(uow)
        recent, pending = self._recent, self._pending
        # Set operations in C, not a Python step per key: a batch's keys are nearly always all new.
        candidates = dict.fromkeys(map(_DEDUP_KEY, records))  # a second copy in the batch drops here
        if not recent.isdisjoint(candidates) or not pending.isdisjoint(candidates):
            for key in [key for key in candidates if key in recent or key in pending]:
                del candidates[key]
        if candidates:
            new_blocks = blocks(candidates)
            seen_before = [seen for width, keys in new_blocks.items()
                           for (seen,) in conn.execute(_FIND_SEEN, (keys, width))]
            if seen_before:  # rare: a re-delivery of a span counted before the last move
                for seen in seen_before:
                    del candidates[seen]
                new_blocks = blocks(candidates)
            stamp = self._stamp(uow.now)
            for width, keys in new_blocks.items():
                conn.execute(_INSERT_BLOCK, (keys, width, stamp))
            pending.update(candidates)
            uow.after_commit(lambda fresh=tuple(candidates): recent.update(fresh))
        if len(candidates) == len(records):
            return
        kept: list[SpanRecord] = []
        for record in records:
            if record.dedup_key in candidates:
                del candidates[record.dedup_key]  # a second copy inside the same batch is a duplicate
                kept.append(record)
        batch.duplicates += len(records) - len(kept)
        batch.records = kept

    def _settle(self, uow: UnitOfWork) -> None:
        """Move the committed recent marks into `spans_seen` (in `uow`'s transaction)."""
        stamp = self._stamp(uow.now)
        for width, keys in blocks(self._recent).items():
            uow.execute(MOVE_MARKS, (keys, width, stamp))
        uow.execute(CLEAR_RECENT_MARKS)
        # Until the commit the moved keys are in both places, which changes no answer; after a
        # rollback they are back in spans_recent_blocks only, as `_recent` still says. Registered
        # before this transaction's new keys are added to the same set.
        uow.after_commit(self._recent.clear)


class CostStage(Stage):
    """Fills `cost_usd` of LLM spans that did not report one, from their tokens (PriceBook)."""

    name = "cost"

    def __init__(self, next: Stage | None = None, *, price_book: PriceBook) -> None:
        super().__init__(next)
        self.price_book = price_book

    def process(self, batch: SpanBatch) -> None:
        cost = self.price_book.cost
        for record in batch.records:
            if not record.is_llm or record.cost_usd is not None:
                continue
            usage = TokenUsage(
                record.input_tokens, record.output_tokens, record.cache_read_tokens,
                record.cache_creation_tokens, record.reasoning_tokens,
            )
            api_url = f"https://{record.server_address}" if record.server_address else None
            result = cost(model=record.model, usage=usage, provider=record.provider, api_url=api_url)
            record.cost_usd = result.usd
            record.cost_source = result.source


class RollupStage(Stage):
    """Counts LLM spans into their run's rollup; notes feature, agent and the run's end.

    Only inference spans add cost, steps and tokens: an `invoke_agent` span's usage totals are
    never added. A span without a run id whose trace root ends finishes an existing run only (a
    plain trace of no GenAI interest creates nothing).
    """

    name = "rollup"

    def __init__(self, next: Stage | None = None, *, stats: CollectorStats) -> None:
        super().__init__(next)
        self.stats = stats

    def process(self, batch: SpanBatch) -> None:
        uow = batch.uow
        records = batch.records
        if uow is None or not records:
            return
        now = uow.now
        run_keys = list(map(_RUN_KEY, records))  # (tenant, run_id) tuples, built in C
        uow.prefetch(set(run_keys))
        runs: dict[tuple[str, str], RunRollup | None] = {}
        # Per (feature, agent, provider, model): [cost, calls, input, output, cache_read,
        # cache_creation, reasoning, unpriced calls]; turned into counter deltas once per batch.
        llm: dict[tuple[str, str, str, str], list] = {}
        for record, key in zip(records, run_keys, strict=True):
            run = runs.get(key, _MISSING)
            if run is _MISSING:
                creates = record.is_llm or record.has_explicit_run or record.operation in _RUN_OPERATIONS
                run = runs[key] = uow.run_for(record) if creates else uow.run(key)
                if run is not None:
                    run.last_seen = now
                    if run.status == EXPIRED:  # it was only slow: a new span proves it alive
                        run.status = ACTIVE
                        run.ended_at = None
            if run is None:
                continue
            feature = record.feature
            if feature is not None and (run.feature is None or record.is_run_root) and run.feature != feature:
                run.feature = sys.intern(feature)  # one copy of each name, however many runs
            agent = record.agent
            if agent is not None and (run.agent is None or record.is_run_root) and run.agent != agent:
                run.agent = sys.intern(agent)
            if record.is_llm:
                run.add_call(record)
                model = record.response_model or record.request_model or UNKNOWN
                labels = (feature or run.feature or UNKNOWN, run.agent or record.agent or UNKNOWN,
                          record.provider or UNKNOWN, model)
                totals = llm.get(labels)
                if totals is None:
                    totals = llm[labels] = [_ZERO, 0, 0, 0, 0, 0, 0, 0]
                if record.cost_usd is not None:
                    totals[0] += record.cost_usd
                totals[1] += 1
                totals[2] += record.input_tokens
                totals[3] += record.output_tokens
                totals[4] += record.cache_read_tokens
                totals[5] += record.cache_creation_tokens
                totals[6] += record.reasoning_tokens
                if record.cost_source == "unknown_model":
                    totals[7] += 1
            if record.is_run_root:
                uow.end_run(run, FINISHED)
        if llm:
            uow.after_commit(lambda: _count_calls(self.stats, llm))


_ZERO = Decimal(0)
_MISSING = object()
_TOKEN_TYPES = ((2, "input"), (3, "output"), (4, "cache_read"), (5, "cache_creation"), (6, "reasoning"))


def _count_calls(stats: CollectorStats, llm: dict[tuple[str, str, str, str], list]) -> None:
    stats.llm_cost.inc_many({labels: float(totals[0]) for labels, totals in llm.items()})
    stats.llm_calls.inc_many({labels: totals[1] for labels, totals in llm.items()})
    stats.llm_tokens.inc_many({
        (*labels, token_type): totals[index]
        for labels, totals in llm.items() for index, token_type in _TOKEN_TYPES if totals[index]
    })
    unpriced = {(labels[2], labels[3]): totals[7] for labels, totals in llm.items() if totals[7]}
    if unpriced:
        stats.llm_unpriced_calls.inc_many(unpriced)


_RUN_OPERATIONS = frozenset({attr.OPERATION_INVOKE_AGENT, attr.OPERATION_EXECUTE_TOOL})


class CommitStage(Stage):
    """The end of the pipeline: what reaches it is committed with the batch's transaction.

    The writer (`collector/ingest.py`) commits once per group of batches after every batch has
    reached this stage; this stage only records what is about to be acknowledged.
    """

    name = "commit"

    def __init__(self, next: Stage | None = None, *, stats: CollectorStats) -> None:
        super().__init__(next)
        self.stats = stats

    def process(self, batch: SpanBatch) -> None:
        if batch.uow is None:
            return
        stats, transport = self.stats, batch.transport
        accepted, duplicates = len(batch.records), batch.duplicates

        def count() -> None:
            stats.spans_accepted.inc((transport,), accepted)
            if duplicates:
                stats.spans_duplicate.inc((transport,), duplicates)

        batch.uow.after_commit(count)
