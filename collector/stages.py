"""The collector's own stages: dedup -> cost -> rollup -> ... -> commit (see `collector/pipeline.py`)."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from cognocient_otel.pricing import PriceBook, TokenUsage
from collector import attributes as attr
from collector.model import SpanBatch, SpanRecord
from collector.pipeline import Stage
from collector.rollup import ACTIVE, EXPIRED, FINISHED, RunRollup
from collector.stats import UNKNOWN, CollectorStats

_INSERT_SEEN = "INSERT OR IGNORE INTO spans_seen (k, t) VALUES (?, ?)"
_SQL_VARIABLES = 500


class DedupStage(Stage):
    """Drops spans already counted, durably: each (trace id, span id) passes once, ever.

    The marks are rows of `spans_seen` written in the batch's transaction, so a span is marked
    exactly when its effect commits. The common case (no duplicate) costs one `executemany`;
    only when SQLite reports fewer inserted rows than spans do we look up which were already
    there: each batch writes its own `t` (a strictly increasing microsecond stamp), so a row
    whose `t` is not this batch's was seen before.
    """

    name = "dedup"

    def __init__(self, next: Stage | None = None, *, stats: CollectorStats) -> None:
        super().__init__(next)
        self.stats = stats
        self._last_stamp = 0

    def _stamp(self, now: float) -> int:
        stamp = max(int(now * 1_000_000), self._last_stamp + 1)
        self._last_stamp = stamp
        return stamp

    def process(self, batch: SpanBatch) -> None:
        records = batch.records
        if not records or batch.uow is None:
            return
        conn = batch.uow.conn
        stamp = self._stamp(batch.uow.now)
        before = conn.total_changes
        conn.executemany(_INSERT_SEEN, [(record.dedup_key, stamp) for record in records])
        if conn.total_changes - before == len(records):
            return
        fresh_keys: set[bytes] = set()
        keys = list({record.dedup_key for record in records})
        for offset in range(0, len(keys), _SQL_VARIABLES):
            chunk = keys[offset:offset + _SQL_VARIABLES]
            rows = conn.execute(
                f"SELECT k FROM spans_seen WHERE t = ? AND k IN ({', '.join('?' * len(chunk))})",
                (stamp, *chunk),
            ).fetchall()
            fresh_keys.update(row[0] for row in rows)
        kept: list[SpanRecord] = []
        for record in records:
            if record.dedup_key in fresh_keys:
                fresh_keys.discard(record.dedup_key)  # a second copy inside the same batch is a duplicate
                kept.append(record)
        batch.duplicates += len(records) - len(kept)
        batch.records = kept


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
        if uow is None or not batch.records:
            return
        now = uow.now
        runs: dict[tuple[str, str], RunRollup | None] = {}
        cost_deltas: dict[tuple[str, ...], Decimal] = defaultdict(Decimal)
        call_deltas: dict[tuple[str, ...], float] = defaultdict(float)
        token_deltas: dict[tuple[str, ...], float] = defaultdict(float)
        unpriced: dict[tuple[str, ...], float] = defaultdict(float)
        for record in batch.records:
            key = (record.tenant, record.run_id)
            creates = record.is_llm or record.has_explicit_run or record.operation in _RUN_OPERATIONS
            run = runs.get(key)
            if run is None:
                run = uow.run_for(record) if creates else uow.run(key)
                runs[key] = run
                if run is None:
                    continue
                run.last_seen = now
                if run.status == EXPIRED:  # it was only slow: a new span proves it alive
                    run.status = ACTIVE
                    run.ended_at = None
            if record.feature and (run.feature is None or record.is_run_root):
                run.feature = record.feature
            if record.agent and (run.agent is None or record.is_run_root):
                run.agent = record.agent
            if record.is_llm:
                run.add_call(record)
                labels = (record.feature or run.feature or UNKNOWN, run.agent or record.agent or UNKNOWN,
                          record.provider or UNKNOWN, record.model or UNKNOWN)
                cost_deltas[labels] += record.cost_usd or Decimal(0)
                call_deltas[labels] += 1
                for token_type, count in (
                    ("input", record.input_tokens), ("output", record.output_tokens),
                    ("cache_read", record.cache_read_tokens),
                    ("cache_creation", record.cache_creation_tokens),
                    ("reasoning", record.reasoning_tokens),
                ):
                    if count:
                        token_deltas[(*labels, token_type)] += count
                if record.cost_source == "unknown_model":
                    unpriced[(labels[2], labels[3])] += 1
            if record.is_run_root:
                uow.end_run(run, FINISHED)
        stats = self.stats

        def count() -> None:
            stats.llm_cost.inc_many({labels: float(amount) for labels, amount in cost_deltas.items()})
            stats.llm_calls.inc_many(call_deltas)
            stats.llm_tokens.inc_many(token_deltas)
            if unpriced:
                stats.llm_unpriced_calls.inc_many(unpriced)

        if call_deltas:
            uow.after_commit(count)


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
