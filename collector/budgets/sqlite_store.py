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
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

from .ledger import run_key
from .model import ZERO, Reservation, RunBlock, SpanCost

__all__ = ["SCHEMA", "SqliteBatchTxn", "SqliteLedgerStore", "SqliteLedgerTxn", "ensure_schema"]

T = TypeVar("T")

CHECKPOINT_INTERVAL_SECONDS = 0.5
_SQL_VARIABLES = 500
_PREFETCH_IDS = 16
# A key's total outlives its last reservation by this much (then the purge forgets it; a key
# without a total is summed from its reservations, so forgetting one early is never wrong).
_TOTAL_KEEP_SLACK_SECONDS = 3600.0

# Keyed tables are WITHOUT ROWID: a rowid table with a TEXT primary key is two b-trees (the rows
# and the key's index), so each write changed two pages; a check writes 5 tables (in-process
# servicer p50 126 -> 117 us, 20k fewer instructions a check).
_TABLES = {
    "budget_spend": """CREATE TABLE IF NOT EXISTS budget_spend (
    key TEXT PRIMARY KEY, usd TEXT NOT NULL, keep_until REAL NOT NULL) WITHOUT ROWID""",
    "budget_reservation": """CREATE TABLE IF NOT EXISTS budget_reservation (
    id TEXT NOT NULL, key TEXT NOT NULL, usd TEXT NOT NULL, expires_at REAL NOT NULL,
    PRIMARY KEY (id, key)) WITHOUT ROWID""",
    "budget_reserved": """CREATE TABLE IF NOT EXISTS budget_reserved (
    key TEXT PRIMARY KEY, usd TEXT NOT NULL, keep_until REAL NOT NULL) WITHOUT ROWID""",
    "budget_accounted": """CREATE TABLE IF NOT EXISTS budget_accounted (
    span_id TEXT PRIMARY KEY, keep_until REAL NOT NULL) WITHOUT ROWID""",
    "budget_run_block": """CREATE TABLE IF NOT EXISTS budget_run_block (
    run_key TEXT PRIMARY KEY, budget TEXT NOT NULL, step INTEGER NOT NULL, at REAL NOT NULL,
    keep_until REAL NOT NULL) WITHOUT ROWID""",
}
_INDEXES = [
    "CREATE INDEX IF NOT EXISTS budget_reservation_by_key ON budget_reservation (key, expires_at)",
]
SCHEMA = ";\n".join([*_TABLES.values(), *_INDEXES]) + ";\n"


def ensure_schema(connection: sqlite3.Connection) -> None:
    """Create the ledger's tables if missing, or move tables of an older schema (rowid tables)
    into their current form, rows included (idempotent; call outside a transaction)."""
    found = dict(connection.execute(
        f"SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name IN ({_marks(len(_TABLES))})",
        list(_TABLES),
    ).fetchall())
    legacy = [name for name, sql in found.items() if "WITHOUT ROWID" not in sql.upper()]
    if legacy:
        connection.execute("BEGIN IMMEDIATE")
        try:
            for name in legacy:
                connection.execute(f"ALTER TABLE {name} RENAME TO {name}_rowid")
                if name == "budget_reservation":
                    connection.execute("DROP INDEX IF EXISTS budget_reservation_by_key")
                connection.execute(_TABLES[name])
                connection.execute(f"INSERT OR IGNORE INTO {name} SELECT * FROM {name}_rowid")
                connection.execute(f"DROP TABLE {name}_rowid")
            for statement in [*_TABLES.values(), *_INDEXES]:
                connection.execute(statement)
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
    connection.executescript(SCHEMA)


def _marks(count: int) -> str:
    return ",".join("?" * count)


@lru_cache(maxsize=256)
def _prefetch_sql(keys: int, ids: int, runs: int) -> str:
    """The query of `SqliteLedgerTxn.prefetch` for so many keys, reservation ids and runs.

    One indexed lookup per value, not `IN (...)` lists: SQLite builds each list into an
    ephemeral b-tree (page allocation, memset), which made this query cost more instructions
    than the five statements it replaces.
    """
    parts = []
    for _ in range(keys):
        parts += [
            "SELECT 0, key, usd, NULL, NULL FROM budget_spend WHERE key = ?",
            "SELECT 1, key, usd, keep_until, NULL FROM budget_reserved WHERE key = ?",
            "SELECT 2, key, usd, expires_at, id FROM budget_reservation WHERE key = ? AND expires_at <= ?",
        ]
    parts += ["SELECT 3, id, key, usd, expires_at FROM budget_reservation WHERE id = ?"] * ids
    parts += ["SELECT 4, run_key, budget, step, at FROM budget_run_block WHERE run_key = ?"] * runs
    return " UNION ALL ".join(parts)


class SqliteLedgerTxn:
    """The ledger's reads and writes on a connection whose transaction the caller manages.

    Reservations: `budget_reservation` holds a row per (reservation, key); `budget_reserved` holds
    each key's running total of those rows, so a check reads one row per key however many
    reservations are in flight on it. Rows that expired are subtracted from their key's total and
    deleted when the key is next read (a range of the (key, expires_at) index, empty unless some
    expired) or by `purge`. A key without a total row (a new key, or rows written before the
    totals existed) is summed from its rows once. Totals changed in a transaction are written by
    `flush()`, which the caller must call before it commits.
    """

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection
        # What this transaction (which holds the write lock) read or wrote: each SQL statement
        # costs time in a busy server, so nothing is read twice.
        self._spent: dict[str, Decimal] = {}
        self._blocks: dict[str, RunBlock | None] = {}
        # Reservation id -> {key: (usd, expires_at)}: its rows, as they are now.
        self._rows: dict[str, dict[str, tuple[Decimal, float]]] = {}
        # Key -> (sum of its rows still present, highest expiry of a row), and the totals to write.
        self._totals: dict[str, tuple[Decimal, float]] = {}
        self._dirty_totals: set[str] = set()
        self._stored: dict[str, tuple[Decimal, float]] = {}  # totals as read from the table
        self._swept: set[str] = set()  # keys whose expired rows this transaction subtracted

    # -- one read for a check ------------------------------------------------------------------
    def prefetch(self, keys: list[str], reservation_ids: list[str], run_keys: list[str], now: float) -> None:
        """Read in one statement what a check is about to ask: the spend and reserved total of
        `keys` (sweeping their expired reservations), the rows of `reservation_ids`, and the
        blocks of `run_keys`. Later reads of these are answered from memory."""
        keys = [key for key in dict.fromkeys(keys) if key not in self._totals and key not in self._spent]
        ids = [rid for rid in dict.fromkeys(reservation_ids) if rid and rid not in self._rows]
        # SQLite allows 500 terms in a compound SELECT: a long list of ids (a request releasing
        # many allowances) is read by id lists, a few statements of 500 ids each.
        ids, more = ids[:_PREFETCH_IDS], ids[_PREFETCH_IDS:]
        for offset in range(0, len(more), _SQL_VARIABLES):
            chunk = more[offset:offset + _SQL_VARIABLES]
            self._rows.update({rid: {} for rid in chunk})
            for rid, key, usd, expires_at in self._db.execute(
                f"SELECT id, key, usd, expires_at FROM budget_reservation WHERE id IN ({_marks(len(chunk))})",
                chunk,
            ):
                self._rows[rid][key] = (Decimal(usd), expires_at)
        runs = [key for key in dict.fromkeys(run_keys) if key not in self._blocks]
        if not keys and not ids and not runs:
            return
        params: list[object] = [value for key in keys for value in (key, key, key, now)]
        spent = dict.fromkeys(keys, ZERO)
        totals: dict[str, tuple[Decimal, float]] = {}
        expired: list[tuple[str, str, Decimal]] = []
        rows: dict[str, dict[str, tuple[Decimal, float]]] = {rid: {} for rid in ids}
        blocks: dict[str, RunBlock | None] = dict.fromkeys(runs)
        for kind, a, b, c, d in self._db.execute(
            _prefetch_sql(len(keys), len(ids), len(runs)), [*params, *ids, *runs]
        ):
            if kind == 0:
                spent[a] = Decimal(b)
            elif kind == 1:
                totals[a] = (Decimal(b), c)
            elif kind == 2:
                expired.append((d, a, Decimal(b)))
            elif kind == 3:
                rows[a][b] = (Decimal(c), d)
            else:
                blocks[a] = RunBlock(b, c, d)
        for key, amount in spent.items():
            self._spent.setdefault(key, amount)
        self._rows.update(rows)
        self._blocks.update(blocks)
        self._load_totals(keys, totals, expired)
        self._swept.update(keys)

    def _load_totals(
        self,
        keys: list[str],
        totals: dict[str, tuple[Decimal, float]],
        expired: list[tuple[str, str, Decimal]],
    ) -> None:
        """Take `totals` of `keys` as read, sum the rows of keys without one, sweep `expired`."""
        self._stored.update((key, totals[key]) for key in keys if key in totals)
        missing = [key for key in keys if key not in totals]
        if missing:
            totals.update(dict.fromkeys(missing, (ZERO, 0.0)))
            for key, usd, expires_at in self._db.execute(
                f"SELECT key, usd, expires_at FROM budget_reservation WHERE key IN ({_marks(len(missing))})",
                missing,
            ):
                total, until = totals[key]
                totals[key] = (total + Decimal(usd), max(until, expires_at))
            self._dirty_totals.update(missing)
        self._totals.update((key, totals[key]) for key in keys)
        if expired:
            for rid, key, usd in expired:
                total, until = self._totals[key]
                self._totals[key] = (total - usd, until)
                self._rows.get(rid, {}).pop(key, None)
                self._dirty_totals.add(key)
            self._db.executemany(
                "DELETE FROM budget_reservation WHERE id = ? AND key = ?",
                [(rid, key) for rid, key, _ in expired],
            )

    def _ensure_totals(self, keys: list[str] | tuple[str, ...], now: float | None = None) -> None:
        """Load the totals of `keys`; with `now`, sweep their reservations expired at `now` too."""
        missing = [key for key in keys if key not in self._totals]
        unswept = [key for key in keys if key not in self._swept] if now is not None else []
        if not missing and not unswept:
            return
        parts: list[str] = []
        params: list[object] = []
        if missing:
            parts.append(
                "SELECT 1, key, usd, keep_until, NULL FROM budget_reserved "
                f"WHERE key IN ({_marks(len(missing))})"
            )
            params += missing
        if unswept:
            parts.append(
                "SELECT 2, key, usd, expires_at, id FROM budget_reservation "
                f"WHERE key IN ({_marks(len(unswept))}) AND expires_at <= ?"
            )
            params += [*unswept, now]
            self._swept.update(unswept)
        totals: dict[str, tuple[Decimal, float]] = {}
        expired: list[tuple[str, str, Decimal]] = []
        for kind, key, usd, when, rid in self._db.execute(" UNION ALL ".join(parts), params):
            if kind == 1:
                totals[key] = (Decimal(usd), when)
            else:
                expired.append((rid, key, Decimal(usd)))
        self._load_totals(missing, totals, expired)

    def _rows_of(self, reservation_id: str) -> dict[str, tuple[Decimal, float]]:
        rows = self._rows.get(reservation_id)
        if rows is None:
            rows = self._rows[reservation_id] = {
                key: (Decimal(usd), expires_at)
                for key, usd, expires_at in self._db.execute(
                    "SELECT key, usd, expires_at FROM budget_reservation WHERE id = ?", (reservation_id,)
                )
            }
        return rows

    def _add_to_totals(self, key: str, amount: Decimal, expires_at: float) -> None:
        total, until = self._totals[key]
        self._totals[key] = (total + amount, max(until, expires_at))
        self._dirty_totals.add(key)

    # -- spend ---------------------------------------------------------------------------------
    def spend(self, key: str) -> Decimal:
        return self.spends([key])[key]

    def spends(self, keys: list[str]) -> dict[str, Decimal]:
        missing = [key for key in keys if key not in self._spent]
        if missing:
            self._spent.update(dict.fromkeys(missing, ZERO))
            for key, usd in self._db.execute(
                f"SELECT key, usd FROM budget_spend WHERE key IN ({_marks(len(missing))})", missing
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

    # -- reservations --------------------------------------------------------------------------
    def reserved(self, key: str, now: float) -> Decimal:
        return self.reserved_many([key], now)[key]

    def reserved_many(self, keys: list[str], now: float) -> dict[str, Decimal]:
        self._ensure_totals(keys, now)
        return {key: self._totals[key][0] for key in keys}

    def reservation(self, reservation_id: str, now: float) -> Reservation | None:
        rows = self._rows_of(reservation_id)
        if not rows:
            return None
        usd, expires_at = next(iter(rows.values()))
        if expires_at <= now:
            return None
        return Reservation(reservation_id, tuple(rows), usd, expires_at)

    def put_reservation(self, reservation: Reservation) -> None:
        # Replace the reservation's rows. Its keys can change (a check sent again with the same
        # span id after midnight reserves under the next day's window): rows of keys it no longer
        # has are deleted, or their expiry would be subtracted from those keys' totals again.
        rows = self._rows_of(reservation.id)
        self._ensure_totals([*reservation.keys, *rows])
        for key, (usd, _) in rows.items():
            self._add_to_totals(key, -usd, 0.0)
        gone = [(reservation.id, key) for key in rows if key not in reservation.keys]
        if gone:
            self._db.executemany("DELETE FROM budget_reservation WHERE id = ? AND key = ?", gone)
        rows.clear()
        for key in reservation.keys:
            rows[key] = (reservation.amount, reservation.expires_at)
            self._add_to_totals(key, reservation.amount, reservation.expires_at)
        usd = str(reservation.amount)
        self._db.executemany(
            "INSERT OR REPLACE INTO budget_reservation (id, key, usd, expires_at) VALUES (?, ?, ?, ?)",
            [(reservation.id, key, usd, reservation.expires_at) for key in reservation.keys],
        )

    def drop_reservation(self, reservation: Reservation) -> None:
        rows = self._rows_of(reservation.id)
        self._ensure_totals(list(rows))
        for key, (usd, _) in rows.items():
            self._add_to_totals(key, -usd, 0.0)
        rows.clear()
        self._db.execute("DELETE FROM budget_reservation WHERE id = ?", (reservation.id,))

    def sweep_expired(self, now: float) -> None:
        """Subtract and delete every expired reservation row (housekeeping: reads sweep lazily)."""
        expired = [
            (rid, key, Decimal(usd))
            for rid, key, usd in self._db.execute(
                "SELECT id, key, usd FROM budget_reservation WHERE expires_at <= ?", (now,)
            )
        ]
        if expired:
            keys = list(dict.fromkeys(key for _, key, _ in expired if key not in self._totals))
            totals = {}
            for offset in range(0, len(keys), _SQL_VARIABLES):
                chunk = keys[offset:offset + _SQL_VARIABLES]
                totals.update(
                    (key, (Decimal(usd), until))
                    for key, usd, until in self._db.execute(
                        "SELECT key, usd, keep_until FROM budget_reserved "
                        f"WHERE key IN ({_marks(len(chunk))})",
                        chunk,
                    )
                )
            # A key without a total row is summed from its rows after the sweep (next read).
            self._totals.update(totals)
            self._stored.update(totals)
            for rid, key, usd in expired:
                self._rows.get(rid, {}).pop(key, None)
                if key in self._totals:
                    total, until = self._totals[key]
                    self._totals[key] = (total - usd, until)
                    self._dirty_totals.add(key)
            self._db.execute("DELETE FROM budget_reservation WHERE expires_at <= ?", (now,))
        self.flush()
        # A key whose last reservation expired holds nothing any more: forget its total.
        self._db.execute("DELETE FROM budget_reserved WHERE keep_until <= ?", (now,))
        self._totals.clear()

    def flush(self) -> None:
        """Write the reserved totals this transaction changed (call before committing)."""
        rows = []
        for key in self._dirty_totals:
            total, until = self._totals[key]
            stored = self._stored.get(key)
            if stored is not None and until <= stored[1]:
                if total == stored[0]:
                    continue  # a call settled and the next one reserved as much: nothing changed
                until = stored[1]
            else:
                # Kept past its last reservation's expiry by a slack, so that a key whose total
                # did not change need not be written for every new reservation's later expiry.
                until += _TOTAL_KEEP_SLACK_SECONDS
            rows.append((key, str(total), until))
            self._stored[key] = self._totals[key] = (total, until)
        self._dirty_totals.clear()
        if rows:
            self._db.executemany(
                "INSERT INTO budget_reserved (key, usd, keep_until) VALUES (?, ?, ?) ON CONFLICT (key) "
                "DO UPDATE SET usd = excluded.usd, keep_until = MAX(keep_until, excluded.keep_until)",
                rows,
            )

    # -- span ids and blocks -------------------------------------------------------------------
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
        if key not in self._blocks:
            row = self._db.execute(
                "SELECT budget, step, at FROM budget_run_block WHERE run_key = ?", (key,)
            ).fetchone()
            self._blocks[key] = RunBlock(row[0], row[1], row[2]) if row else None
        return self._blocks[key]

    def set_run_block(self, key: str, block: RunBlock, *, keep_until: float) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO budget_run_block (run_key, budget, step, at, keep_until) "
            "VALUES (?, ?, ?, ?, ?)",
            (key, block.budget, block.step, block.at, keep_until),
        )
        # INSERT OR IGNORE: the first block stays; read it again if this one may not have been.
        if self._blocks.get(key, 0) is None:
            self._blocks[key] = block
        else:
            self._blocks.pop(key, None)


class SqliteBatchTxn(SqliteLedgerTxn):
    """`SqliteLedgerTxn` for `Ledger.count_spans` over one batch of spans, in the caller's transaction.

    The same reads and writes, gathered: at construction one query for which of the batch's span
    ids were already counted, one for the spend and one for the block of each run of the batch;
    the new accounted ids and spend are written by `flush()`, once per table, which the caller
    must call before it commits. What the ledger reads always includes what it wrote. Only what
    `count_spans` uses is batched (accounted span ids, spend, run blocks); the rest is
    `SqliteLedgerTxn`'s. Spend is already cached by the parent for the transaction.
    """

    def __init__(self, connection: sqlite3.Connection, spans: list[SpanCost]) -> None:
        super().__init__(connection)
        self._accounted: set[str] = set()  # counted before this batch, or by it
        self._new_accounted: dict[str, float] = {}
        self._spend_writes: dict[str, float] = {}  # key -> keep_until (the highest asked for)
        ids = list({span.span_id for span in spans})
        for offset in range(0, len(ids), _SQL_VARIABLES):
            chunk = ids[offset:offset + _SQL_VARIABLES]
            self._accounted.update(row[0] for row in connection.execute(
                f"SELECT span_id FROM budget_accounted WHERE span_id IN ({_marks(len(chunk))})", chunk))
        # Each span reads its run's spend and block: read them for every run of the batch at once.
        runs = list({run_key(span.tenant, span.run_id) for span in spans})
        for offset in range(0, len(runs), _SQL_VARIABLES):
            chunk = runs[offset:offset + _SQL_VARIABLES]
            self.spends(chunk)
            self._blocks.update(dict.fromkeys(chunk))
            query = ("SELECT run_key, budget, step, at FROM budget_run_block "
                     f"WHERE run_key IN ({_marks(len(chunk))})")
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

    def flush(self) -> None:
        """Write what the batch counted, in the caller's transaction."""
        super().flush()
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
                txn = SqliteLedgerTxn(connection)
                result = operation(txn)
                txn.flush()
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
                SqliteLedgerTxn(connection).sweep_expired(now)
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
