"""The SQLite store (WAL) and the unit of work every batch is processed in.

Extension point (issues 4 and 5). Only the ingest writer thread writes (`collector/ingest.py`): it
opens one transaction for a group of export batches, creates a `UnitOfWork` for it, runs each
batch through the pipeline with `batch.uow` set, then `UnitOfWork.commit()` writes the staged
runs (one UPSERT per run per transaction, not one per span) and commits. Only then are the
requests acknowledged and the staged rollups published to memory. A crash before the commit loses
the whole group (nothing was acknowledged); a crash after it loses nothing.

What a stage may do with `batch.uow` (all of it lands in the same transaction as the batch's
dedup marks and rollups):

* `uow.run(key)`, `uow.run_for(record)`: the run's `RunRollup` staged for this transaction (a copy;
  change it freely, it is written and published at commit);
* `uow.add_waste_flag(key, kind=, step=, message=, wasted_cost_usd=)` and
  `uow.mark_blocked(key, budget=, step=, feature=, agent=)`: durable and idempotent;
* `uow.execute(sql, params)` / `uow.executemany(sql, rows)` on the stage's own tables (create them
  in `Stage.setup(store)`, which runs once at start with `store.executescript`);
* `uow.after_commit(callback)`: in-memory effects (counters, caches) that must happen only if the
  transaction commits.

Outside ingest (a budget check marking a run blocked, say), `Collector.submit_job(fn)` runs
`fn(uow)` on the writer thread in a transaction of its own and returns when it is committed.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from collector.key_blocks import insert_or_ignore
from collector.model import RunKey, SpanRecord
from collector.rollup import ACTIVE, BLOCKED, ENDED_STATUSES, ROW_COLUMNS, RunRollup, RunState

logger = logging.getLogger(__name__)

# 2: the recent dedup marks are kept as one row per batch (`spans_recent_blocks`). A store of a
# newer schema is refused rather than half understood.
SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
-- One row per span counted: key = start time (8 bytes, big-endian) + trace id + span id (see
-- SpanRecord.dedup_key), and the microsecond stamp of the batch or move that wrote it. WITHOUT ROWID
-- keeps it a single B-tree keyed by the ids; old marks are a range at its left edge.
CREATE TABLE IF NOT EXISTS spans_seen (k BLOB PRIMARY KEY, t INTEGER NOT NULL) WITHOUT ROWID;
-- The latest marks, in arrival order (a rowid table, no index: each commit appends at its end),
-- one row per batch: its keys of `width` bytes joined end to end. The dedup stage keeps them in
-- memory and moves them into spans_seen in bulk (collector/stages.py, DedupStage).
CREATE TABLE IF NOT EXISTS spans_recent_blocks (
    keys BLOB NOT NULL, width INTEGER NOT NULL, t INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    tenant TEXT NOT NULL,
    run_id TEXT NOT NULL,
    feature TEXT,
    agent TEXT,
    status TEXT NOT NULL,
    cost_usd TEXT NOT NULL,          -- exact Decimal
    cost_float REAL NOT NULL,        -- for ORDER BY only
    steps INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cache_read_tokens INTEGER NOT NULL,
    cache_creation_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL,
    models TEXT NOT NULL,            -- JSON {model: [calls, cost, input, output, provider]}
    first_call_ns INTEGER,
    last_call_ns INTEGER,
    last_seen REAL NOT NULL,
    ended_at REAL,
    waste_flags TEXT,                -- JSON list of {kind, step, message, wasted_cost_usd?}
    flag_kinds TEXT NOT NULL,        -- ",loop,retry_storm," for filtering
    blocked_by TEXT,                 -- JSON {budget, step}
    unpriced_calls INTEGER NOT NULL,
    PRIMARY KEY (tenant, run_id)
);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status);
CREATE INDEX IF NOT EXISTS runs_by_last_seen ON runs (last_seen);
"""

# A true UPSERT updates the row in place: INSERT OR REPLACE would delete and re-insert it, and
# rewrite every index entry of the run each time.
_UPSERT_RUN = (
    f"INSERT INTO runs ({', '.join(ROW_COLUMNS)}) VALUES ({', '.join('?' * len(ROW_COLUMNS))}) "
    "ON CONFLICT (tenant, run_id) DO UPDATE SET "
    + ", ".join(f"{column} = excluded.{column}" for column in ROW_COLUMNS[2:])
)
_MODELS_COLUMN = ROW_COLUMNS.index("models")
# Moves a block of dedup marks (?1 keys, ?2 width, ?3 stamp) into spans_seen (the dedup stage
# and a clean close).
MOVE_MARKS = insert_or_ignore("spans_seen", "k", "t")
CLEAR_RECENT_MARKS = "DELETE FROM spans_recent_blocks"
_SELECT_RUN = f"SELECT {', '.join(ROW_COLUMNS)} FROM runs"


class StoreError(RuntimeError):
    """The store cannot be opened or used (path not writable, not a Cognocient database, ...)."""


class Store:
    """The collector's SQLite database. One writer connection, owned by the ingest writer thread."""

    def __init__(self, path: str, *, synchronous: str = "normal") -> None:
        self.path = path
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise StoreError(f"store.path {path!r}: folder {directory!r} does not exist")
        conn = None  # set once connected: a failed connect leaves nothing to close
        try:
            self.conn = conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL survives a killed process (the commit is in the WAL file); FULL also
            # survives power loss, at the price of an fsync per group commit.
            self.conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self.conn.execute("PRAGMA busy_timeout=5000")
            self.conn.execute("PRAGMA cache_size=-16000")
            # Checkpoint the WAL into the database every ~40 MB rather than every 4 MB: the pages
            # every commit dirties (the right edge of the dedup index, the runs table) are copied
            # back far fewer times. Durability does not change: a commit is in the WAL either way.
            self.conn.execute("PRAGMA wal_autocheckpoint=10000")
            self.conn.executescript(_SCHEMA)
            self._check_schema_version()
            self._move_row_per_key_marks()
            self.conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (str(SCHEMA_VERSION),)
            )
        except (sqlite3.DatabaseError, StoreError) as error:
            if conn is not None:
                conn.close()
            if isinstance(error, StoreError):
                raise
            raise StoreError(f"store.path {path!r}: cannot open the SQLite store: {error}") from error

    def _check_schema_version(self) -> None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is not None and (not str(row[0]).isdigit() or int(row[0]) > SCHEMA_VERSION):
            raise StoreError(
                f"store.path {self.path!r}: written by a newer collector (schema version {row[0]}; "
                f"this one reads up to {SCHEMA_VERSION}): upgrade the collector or use another store"
            )

    def _move_row_per_key_marks(self) -> None:
        """Stores written before the marks were kept in blocks have a `spans_recent` table with a
        row per key: its marks are moved into spans_seen (what the dedup stage's settle does)."""
        if self.conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'spans_recent'").fetchone():
            self.conn.executescript(
                "BEGIN IMMEDIATE;"
                "INSERT OR IGNORE INTO spans_seen (k, t) SELECT k, t FROM spans_recent ORDER BY k;"
                "DROP TABLE spans_recent;"
                "COMMIT;"
            )

    def executescript(self, script: str) -> None:
        """Create a stage's own tables (call from `Stage.setup`)."""
        self.conn.executescript(script)

    def load_runs(self, *, since: float) -> list[RunRollup]:
        """Runs still active, or seen since `since` (wall-clock seconds)."""
        # Two indexed queries rather than a UNION, which would sort every row to deduplicate; the
        # garbage collector is paused because 100k new objects would trigger it again and again.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            # Rows are streamed, not fetched all at once: 100k row tuples at a time would leave
            # the heap that much larger after they are freed.
            runs = [RunRollup.from_row(row) for row in self.conn.execute(
                f"{_SELECT_RUN} WHERE status = ?", (ACTIVE,))]
            runs += [RunRollup.from_row(row) for row in self.conn.execute(
                f"{_SELECT_RUN} WHERE last_seen >= ? AND status != ?", (since, ACTIVE))]
            return runs
        finally:
            if gc_was_enabled:
                gc.enable()

    def load_runs_by_key(self, keys: list[RunKey]) -> list[RunRollup]:
        by_tenant: dict[str, list[str]] = {}
        for tenant, run_id in keys:
            by_tenant.setdefault(tenant, []).append(run_id)
        runs = []
        for tenant, run_ids in by_tenant.items():
            marks = ", ".join("?" * len(run_ids))
            rows = self.conn.execute(
                f"{_SELECT_RUN} WHERE tenant = ? AND run_id IN ({marks})", (tenant, *run_ids)
            ).fetchall()
            runs.extend(RunRollup.from_row(row) for row in rows)
        return runs

    def load_run(self, key: RunKey) -> RunRollup | None:
        row = self.conn.execute(f"{_SELECT_RUN} WHERE tenant = ? AND run_id = ?", key).fetchone()
        return RunRollup.from_row(row) if row else None

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._move_recent_blocks()
        # Another process reading can make the checkpoint fail: it is only an optimisation.
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.conn.close()

    def _move_recent_blocks(self) -> None:
        """On a clean close, move the recent dedup marks into spans_seen (each with its batch's
        stamp): a store closed cleanly then has every mark where any version of the collector
        looks, which keeps a downgrade to one that predates the blocks from counting re-delivered
        spans again. After kill -9 they stay in their blocks, where this version finds them."""
        if self.conn.in_transaction:  # someone's transaction is open: not ours to finish
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            for keys, width, stamp in self.conn.execute(
                "SELECT keys, width, t FROM spans_recent_blocks"
            ).fetchall():
                self.conn.execute(MOVE_MARKS, (keys, width, stamp))
            self.conn.execute(CLEAR_RECENT_MARKS)
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")


AfterCommit = Callable[[], None]


class UnitOfWork:
    """One store transaction: staged run rollups, raw SQL of stages, after-commit callbacks.

    Used by the ingest writer thread only. `now` is the wall-clock time the transaction started;
    stages use it rather than reading the clock per span.
    """

    def __init__(self, store: Store, state: RunState, *, now: float | None = None) -> None:
        self.store = store
        self.conn = store.conn
        self.state = state
        self.now = time.time() if now is None else now
        self._staged: dict[RunKey, RunRollup] = {}
        self._loaded: dict[RunKey, RunRollup] = {}  # prefetched from the store, not yet staged
        self._absent: set[RunKey] = set()  # known not to be in the store (in this transaction)
        self._ended: list[RunRollup] = []
        self._callbacks: list[AfterCommit] = []
        self._open = False

    # -- transaction (the writer calls these) ---------------------------------------------------

    def begin(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self._open = True

    def commit(self) -> None:
        """Write the staged runs, commit, publish them to memory, run the after-commit callbacks."""
        rows = [run.to_row() for run in self._staged.values()]
        if rows:
            self.conn.executemany(_UPSERT_RUN, rows)
        self.conn.execute("COMMIT")
        self._open = False
        for run, row in zip(self._staged.values(), rows, strict=True):
            run.compact(row[_MODELS_COLUMN])  # at rest in memory, the per-model breakdown stays JSON
        self.state.publish(self._staged)
        for callback in self._callbacks:
            try:
                callback()
            except Exception:  # an in-memory side effect must not fail an acknowledged batch
                logger.exception("after-commit callback failed")

    def rollback(self) -> None:
        if self._open:
            self.conn.execute("ROLLBACK")
            self._open = False
        self._staged.clear()
        self._loaded.clear()
        self._absent.clear()
        self._ended.clear()
        self._callbacks.clear()

    # -- what stages use ----------------------------------------------------------------------------

    def prefetch(self, keys: Iterable[RunKey]) -> None:
        """Load in one query the runs of `keys` that are neither staged nor in memory.

        Most runs of a batch are in memory (active); a new run's key is looked up in the store
        once per batch here rather than once per run with a query each.
        """
        wanted = [key for key in keys
                  if key not in self._staged and key not in self._absent and self.state.get(key) is None]
        for offset in range(0, len(wanted), 400):
            chunk = wanted[offset:offset + 400]
            for run in self.store.load_runs_by_key(chunk):
                self._loaded[run.key] = run
            self._absent.update(key for key in chunk if key not in self._loaded)

    def run(self, key: RunKey) -> RunRollup | None:
        """The run staged in this transaction (a private copy), or None when it does not exist."""
        staged = self._staged.get(key)
        if staged is not None:
            return staged
        committed = self.state.get(key) or self._loaded.pop(key, None)
        if committed is None:
            if key in self._absent:
                return None
            committed = self.store.load_run(key)
            if committed is None:
                return None
        staged = self._staged[key] = committed.copy()
        return staged

    def run_for(self, record: SpanRecord) -> RunRollup:
        """The run `record` belongs to, created (active) when it is new."""
        key = (record.tenant, record.run_id)
        run = self._staged.get(key) or self.run(key)
        if run is None:
            run = self._staged[key] = RunRollup(record.tenant, record.run_id, last_seen=self.now)
            self._absent.discard(key)
        return run

    def end_run(self, run: RunRollup, status: str) -> None:
        """Move a staged run out of `active` (finished, blocked, expired); a blocked run stays blocked."""
        if run.status == status or run.status == BLOCKED:
            return
        was_active = run.status not in ENDED_STATUSES
        run.status = status
        run.ended_at = self.now
        if was_active:
            self._ended.append(run)

    @property
    def ended_runs(self) -> list[RunRollup]:
        """Runs that left `active` in this transaction (for per-run histograms)."""
        return self._ended

    def add_waste_flag(
        self,
        key: RunKey,
        *,
        kind: str,
        step: int | None,
        message: str,
        wasted_cost_usd: Decimal | None = None,
    ) -> bool:
        """Flag the run `kind` at `step`; False when it already carries a `kind` flag or is unknown."""
        run = self.run(key)
        if run is None or run.has_flag(kind):
            return False
        flag: dict[str, Any] = {"kind": kind, "step": step, "message": message}
        if wasted_cost_usd is not None:
            flag["wasted_cost_usd"] = str(wasted_cost_usd)
        run.waste_flags.append(flag)
        return True

    def mark_blocked(
        self,
        key: RunKey,
        *,
        budget: str,
        step: int | None,
        feature: str | None = None,
        agent: str | None = None,
    ) -> bool:
        """Mark the run blocked by `budget` at `step` (created if unknown); False if already blocked.

        `feature` and `agent` are what the blocker knows of the run (a budget check names both):
        they fill in what its spans have not told yet, so that the run's end is counted under its
        own labels rather than `unknown`. A value the spans already gave is kept.
        """
        run = self.run(key)
        if run is None:
            run = self._staged[key] = RunRollup(key[0], key[1], last_seen=self.now)
            self._absent.discard(key)
        if run.status == BLOCKED:
            return False
        if feature and run.feature is None:
            run.feature = sys.intern(feature)
        if agent and run.agent is None:
            run.agent = sys.intern(agent)
        run.blocked_by = {"budget": budget, "step": step}
        self.end_run(run, BLOCKED)
        return True

    def staged_runs(self) -> dict[RunKey, RunRollup]:
        return self._staged

    def execute(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, tuple(params))

    def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> sqlite3.Cursor:
        return self.conn.executemany(sql, rows)

    def after_commit(self, callback: AfterCommit) -> None:
        self._callbacks.append(callback)
