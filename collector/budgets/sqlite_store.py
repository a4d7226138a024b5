"""The embedded ledger backend: SQLite, one file, safe across threads and processes.

Every operation runs in a `BEGIN IMMEDIATE` transaction: SQLite takes the database's write
lock at BEGIN, so two checks (in two threads or two collector processes sharing the file)
run one after the other and cannot both take the last dollar.

The tables can live in the collector's own store: `SqliteLedgerTxn(connection)` runs the
ledger inside a transaction the caller already opened (the batch commit of dedup + rollup),
so a span's cost reaches the budgets in the same commit that counts it in its run.

Decimal amounts are stored as TEXT: SQLite's numbers are binary floats.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

from .ledger import run_key
from .model import ZERO, Reservation, RunBlock, SpanCost

__all__ = ["SCHEMA", "SqliteBatchTxn", "SqliteLedgerStore", "SqliteLedgerTxn", "ensure_schema"]

T = TypeVar("T")

CHECKPOINT_INTERVAL_SECONDS = 0.5

SCHEMA = """
CREATE TABLE IF NOT EXISTS budget_spend (
    key TEXT PRIMARY KEY, usd TEXT NOT NULL, keep_until REAL NOT NULL);
CREATE TABLE IF NOT EXISTS budget_reservation (
    id TEXT NOT NULL, key TEXT NOT NULL, usd TEXT NOT NULL, expires_at REAL NOT NULL,
    PRIMARY KEY (id, key));
CREATE INDEX IF NOT EXISTS budget_reservation_by_key ON budget_reservation (key, expires_at);
CREATE TABLE IF NOT EXISTS budget_accounted (span_id TEXT PRIMARY KEY, keep_until REAL NOT NULL);
CREATE TABLE IF NOT EXISTS budget_run_block (
    run_key TEXT PRIMARY KEY, budget TEXT NOT NULL, step INTEGER NOT NULL, at REAL NOT NULL,
    keep_until REAL NOT NULL);
"""


def ensure_schema(connection: sqlite3.Connection) -> None:
    """Create the ledger's tables if missing (idempotent; call outside a transaction)."""
    connection.executescript(SCHEMA)


class SqliteLedgerTxn:
    """The ledger's reads and writes on a connection whose transaction the caller manages."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection
        # Spend read or written in this transaction (which holds the write lock): each SQL
        # statement costs a GIL hand-off in a busy server, so none is repeated.
        self._spent: dict[str, Decimal] = {}

    def spend(self, key: str) -> Decimal:
        return self.spends([key])[key]

    def spends(self, keys: list[str]) -> dict[str, Decimal]:
        missing = [key for key in keys if key not in self._spent]
        if missing:
            self._spent.update(dict.fromkeys(missing, ZERO))
            marks = ",".join("?" * len(missing))
            for key, usd in self._db.execute(
                f"SELECT key, usd FROM budget_spend WHERE key IN ({marks})", missing
            ):
                self._spent[key] = Decimal(usd)
        return {key: self._spent[key] for key in keys}

    def add_spend(self, key: str, amount: Decimal, *, keep_until: float) -> None:
        self.add_spends({key: (amount, keep_until)})

    def add_spends(self, amounts: dict[str, tuple[Decimal, float]]) -> None:
        current = self.spends(list(amounts))
        for key, (amount, _) in amounts.items():
            self._spent[key] = current[key] + amount
        self._db.executemany(
            "INSERT INTO budget_spend (key, usd, keep_until) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE "
            "SET usd = excluded.usd, keep_until = MAX(keep_until, excluded.keep_until)",
            [(key, str(current[key] + amount), keep_until) for key, (amount, keep_until) in amounts.items()],
        )

    def reserved(self, key: str, now: float) -> Decimal:
        return self.reserved_many([key], now)[key]

    def reserved_many(self, keys: list[str], now: float) -> dict[str, Decimal]:
        found = dict.fromkeys(keys, ZERO)
        if keys:
            marks = ",".join("?" * len(keys))
            rows = self._db.execute(
                f"SELECT key, usd FROM budget_reservation WHERE key IN ({marks}) AND expires_at > ?",
                (*keys, now),
            )
            for key, usd in rows:
                found[key] += Decimal(usd)
        return found

    def reservation(self, reservation_id: str, now: float) -> Reservation | None:
        rows = self._db.execute(
            "SELECT key, usd, expires_at FROM budget_reservation WHERE id = ? AND expires_at > ?",
            (reservation_id, now),
        ).fetchall()
        if not rows:
            return None
        return Reservation(reservation_id, tuple(row[0] for row in rows), Decimal(rows[0][1]), rows[0][2])

    def put_reservation(self, reservation: Reservation) -> None:
        # A reservation's keys never change (a settlement only lowers its amount): replace rows.
        self._db.executemany(
            "INSERT OR REPLACE INTO budget_reservation (id, key, usd, expires_at) VALUES (?, ?, ?, ?)",
            [
                (reservation.id, key, str(reservation.amount), reservation.expires_at)
                for key in reservation.keys
            ],
        )

    def drop_reservation(self, reservation: Reservation) -> None:
        self._db.execute("DELETE FROM budget_reservation WHERE id = ?", (reservation.id,))

    def is_accounted(self, span_id: str) -> bool:
        return (
            self._db.execute("SELECT 1 FROM budget_accounted WHERE span_id = ?", (span_id,)).fetchone()
            is not None
        )

    def mark_accounted(self, span_id: str, *, keep_until: float) -> bool:
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO budget_accounted (span_id, keep_until) VALUES (?, ?)",
            (span_id, keep_until),
        )
        return cursor.rowcount == 1

    def run_block(self, key: str) -> RunBlock | None:
        row = self._db.execute(
            "SELECT budget, step, at FROM budget_run_block WHERE run_key = ?", (key,)
        ).fetchone()
        return RunBlock(row[0], row[1], row[2]) if row else None

    def set_run_block(self, key: str, block: RunBlock, *, keep_until: float) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO budget_run_block (run_key, budget, step, at, keep_until) "
            "VALUES (?, ?, ?, ?, ?)",
            (key, block.budget, block.step, block.at, keep_until),
        )


class SqliteBatchTxn(SqliteLedgerTxn):
    """`SqliteLedgerTxn` for `Ledger.count_spans` over one batch of spans, in the caller's transaction.

    The same reads and writes, gathered: at construction one query for which of the batch's span
    ids were already counted, one for the spend and one for the block of each run of the batch;
    the new accounted ids and spend are written by `flush()`, once per table, which the caller
    must call before it commits. What the ledger reads always includes what it wrote. Only what
    `count_spans` uses is batched (accounted span ids, spend, run blocks); the rest is
    `SqliteLedgerTxn`'s. Spend is already cached by the parent for the transaction.
    """

    _SQL_VARIABLES = 500

    def __init__(self, connection: sqlite3.Connection, spans: list[SpanCost]) -> None:
        super().__init__(connection)
        self._accounted: set[str] = set()  # counted before this batch, or by it
        self._new_accounted: dict[str, float] = {}
        self._spend_writes: dict[str, float] = {}  # key -> keep_until (the highest asked for)
        self._blocks: dict[str, RunBlock | None] = {}
        ids = list({span.span_id for span in spans})
        for offset in range(0, len(ids), self._SQL_VARIABLES):
            chunk = ids[offset:offset + self._SQL_VARIABLES]
            marks = ",".join("?" * len(chunk))
            self._accounted.update(row[0] for row in connection.execute(
                f"SELECT span_id FROM budget_accounted WHERE span_id IN ({marks})", chunk))
        # Each span reads its run's spend and block: read them for every run of the batch at once.
        runs = list({run_key(span.tenant, span.run_id) for span in spans})
        for offset in range(0, len(runs), self._SQL_VARIABLES):
            chunk = runs[offset:offset + self._SQL_VARIABLES]
            self.spends(chunk)
            self._blocks.update(dict.fromkeys(chunk))
            marks = ",".join("?" * len(chunk))
            query = f"SELECT run_key, budget, step, at FROM budget_run_block WHERE run_key IN ({marks})"
            for key, budget, step, at in connection.execute(query, chunk):
                self._blocks[key] = RunBlock(budget, step, at)

    def mark_accounted(self, span_id: str, *, keep_until: float) -> bool:
        if span_id in self._accounted:
            return False
        self._accounted.add(span_id)
        self._new_accounted[span_id] = keep_until
        return True

    def add_spends(self, amounts: dict[str, tuple[Decimal, float]]) -> None:
        current = self.spends(list(amounts))
        writes = self._spend_writes
        for key, (amount, keep_until) in amounts.items():
            self._spent[key] = current[key] + amount
            if writes.get(key, keep_until) <= keep_until:
                writes[key] = keep_until

    def run_block(self, key: str) -> RunBlock | None:
        if key not in self._blocks:
            self._blocks[key] = super().run_block(key)
        return self._blocks[key]

    def set_run_block(self, key: str, block: RunBlock, *, keep_until: float) -> None:
        super().set_run_block(key, block, keep_until=keep_until)  # INSERT OR IGNORE: the first stays
        self._blocks.pop(key, None)

    def flush(self) -> None:
        """Write what the batch counted, in the caller's transaction."""
        if self._new_accounted:
            self._db.executemany(
                "INSERT OR IGNORE INTO budget_accounted (span_id, keep_until) VALUES (?, ?)",
                list(self._new_accounted.items()))
        if self._spend_writes:
            self._db.executemany(
                "INSERT INTO budget_spend (key, usd, keep_until) VALUES (?, ?, ?) ON CONFLICT (key) "
                "DO UPDATE SET usd = excluded.usd, keep_until = MAX(keep_until, excluded.keep_until)",
                [(key, str(self._spent[key]), keep_until) for key, keep_until in self._spend_writes.items()])
        self._new_accounted.clear()
        self._spend_writes.clear()


class SqliteLedgerStore:
    """A ledger file (or the collector's store file), one connection shared by all threads.

    One connection, not one per thread: SQLite drops a connection's page cache whenever another
    connection wrote to the file, so with a connection per gRPC worker thread every check re-read
    its pages (about ten `pread`s a check) because the previous check ran on another thread. A
    lock serialises this process's transactions (they serialise anyway at BEGIN IMMEDIATE, whose
    busy handler sleeps whole milliseconds where the lock wakes the next thread at once);
    BEGIN IMMEDIATE still serialises them with other processes sharing the file.
    """

    def __init__(self, path: str | Path, *, busy_timeout_seconds: float = 10.0) -> None:
        self.path = str(path)
        self._busy_timeout = busy_timeout_seconds
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = self._open()
        ensure_schema(self._db)
        self._stop = threading.Event()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, name="cognocient-budget-checkpoint", daemon=True
        )
        self._checkpointer.start()

    def _checkpoint_loop(self) -> None:
        connection = sqlite3.connect(
            self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            while not self._stop.wait(CHECKPOINT_INTERVAL_SECONDS):
                try:
                    # PASSIVE never blocks writers: what a writer holds is checkpointed next time.
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error:
                    continue
        finally:
            connection.close()

    def _open(self) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
        )
        connection.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a commit is atomic and survives a process crash; only a power loss
        # can drop the last commits, which for reservations means a check is forgotten.
        connection.execute("PRAGMA synchronous=NORMAL")
        # Checkpoints (the only fsyncs in WAL + NORMAL) run in a background thread, not in
        # the check that happens to fill the WAL: a check must answer in well under 1 ms.
        connection.execute("PRAGMA wal_autocheckpoint=0")
        return connection

    def _connection(self) -> sqlite3.Connection:
        """The connection (call with the lock held)."""
        if self._db is None:
            raise sqlite3.ProgrammingError("the budget ledger store is closed")
        return self._db

    def run(self, operation: Callable[[SqliteLedgerTxn], T], *, now: float) -> T:
        with self._lock:
            connection = self._connection()
            connection.execute("BEGIN IMMEDIATE")
            try:
                result = operation(SqliteLedgerTxn(connection))
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
            return result

    def purge(self, now: float) -> None:
        with self._lock:
            connection = self._connection()
            connection.execute("BEGIN IMMEDIATE")
            try:
                connection.execute("DELETE FROM budget_reservation WHERE expires_at <= ?", (now,))
                connection.execute("DELETE FROM budget_spend WHERE keep_until <= ?", (now,))
                connection.execute("DELETE FROM budget_accounted WHERE keep_until <= ?", (now,))
                connection.execute("DELETE FROM budget_run_block WHERE keep_until <= ?", (now,))
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    def close(self) -> None:
        self._stop.set()
        if self._checkpointer.is_alive() and self._checkpointer is not threading.current_thread():
            self._checkpointer.join(timeout=5)
        with self._lock:
            if self._db is not None:
                self._db.close()
            self._db = None
