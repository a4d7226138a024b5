"""The running total of reservations per key (both backends): a check reads one total per key,
however many reservations are in flight, and the total follows every way a reservation ends:
settled, released, replaced, expired (subtracted when the key is next read), purged; and totals
missing (a key reserved before the totals existed) are summed from the reservations once."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from collector.budgets.config import parse_budgets
from collector.budgets.ledger import Ledger, run_key, window_key
from collector.budgets.model import CheckRequest, Reservation, Settlement

BUDGETS = parse_budgets(
    [
        {
            "name": "docs",
            "scope": "feature",
            "scope_value": "docs",
            "monthly_limit_usd": 1000,
            "per_run_limit_usd": 500,
            "reservation_ttl_seconds": 60,
        }
    ]
)
RUN = run_key("default", "r1")
WINDOW = window_key("docs", "monthly", "2026-01")


@pytest.fixture
def ledger(make_store, clock):
    return Ledger(make_store(), BUDGETS, clock=clock)


def check(ledger: Ledger, span: str = "", est: str = "0.01", **kw) -> object:
    request = CheckRequest(
        run_id="r1", tenant="default", feature="docs", estimated_cost_usd=D(est), span_id=span, **kw
    )
    return ledger.check(request)


def reserved(ledger: Ledger) -> tuple[D, D]:
    now = ledger.clock().timestamp()
    return ledger.store.run(lambda txn: (txn.reserved(RUN, now), txn.reserved(WINDOW, now)), now=now)


def reserved_on(ledger: Ledger, key: str) -> D:
    now = ledger.clock().timestamp()
    return ledger.store.run(lambda txn: txn.reserved(key, now), now=now)


def test_the_total_follows_settlements_releases_replacements_and_expiry(ledger, clock):
    for index in range(150):
        check(ledger, span=f"a{index}")
    clock.advance(seconds=30)
    for index in range(150):
        check(ledger, span=f"b{index}")
    assert reserved(ledger) == (D("3.00"), D("3.00"))
    assert check(ledger).run_remaining_usd == D("497.00")  # a check without a span reserves nothing

    # Settled (replaced by the actual cost), released, and reserved again under the same id.
    check(ledger, settle=tuple(Settlement(f"a{index}", D("0.02")) for index in range(100)))
    check(ledger, release=tuple(f"a{index}" for index in range(100, 120)))
    check(ledger, span="b0", est="0.05")
    assert reserved(ledger) == (D("1.84"), D("1.84"))
    assert check(ledger).run_spent_usd == D("2.00")

    # The a* reservations expire first: 30 of them are left, no longer counted; then the b* ones.
    clock.advance(seconds=31)
    assert reserved(ledger) == (D("1.54"), D("1.54"))
    answer = check(ledger, span="c1", est="0.10")
    assert answer.run_remaining_usd == D("500") - D("2.00") - D("1.54") - D("0.10")
    clock.advance(seconds=30)
    assert reserved(ledger) == (D("0.10"), D("0.10"))
    # A settlement of an expired reservation changes nothing: its span is counted on arrival.
    check(ledger, settle=(Settlement("b1", D("0.01")),))
    assert reserved(ledger) == (D("0.10"), D("0.10")) and check(ledger).run_spent_usd == D("2.00")
    clock.advance(seconds=61)
    assert reserved(ledger) == (D(0), D(0))
    # The whole per-run limit is free again for this run (nothing expired is still held).
    assert check(ledger, span="all", est="498").decision == "allow"


def test_many_reservations_in_flight_on_one_key_block_at_the_limit(make_store, clock):
    budgets = parse_budgets(
        [{"name": "docs", "scope": "feature", "scope_value": "docs", "monthly_limit_usd": 10}]
    )
    ledger = Ledger(make_store(), budgets, clock=clock)
    decisions = [check(ledger, span=f"s{index}", est="0.01").decision for index in range(1001)]
    assert decisions.count("allow") == 1000 and decisions[-1] == "block"
    # One request releasing all of them (more ids than one SQLite compound query may hold).
    check(ledger, release=tuple(f"s{index}" for index in range(1000)))
    assert reserved_on(ledger, WINDOW) == 0
    assert check(ledger, span="again", est="10").decision == "allow"


def test_a_key_without_a_total_is_summed_from_its_reservations(ledger, make_store, clock):
    """Reservations written before the totals existed (or a total lost) are summed once."""
    for index in range(20):
        check(ledger, span=f"a{index}")
    clock.advance(seconds=30)
    for index in range(10):
        check(ledger, span=f"b{index}")
    _forget_totals(ledger.store, make_store.backend)
    assert reserved(ledger) == (D("0.30"), D("0.30"))
    check(ledger, span="c0", est="0.20")
    clock.advance(seconds=31)  # the a* reservations expired
    assert reserved(ledger) == (D("0.30"), D("0.30"))
    _forget_totals(ledger.store, make_store.backend)
    assert reserved(ledger) == (D("0.30"), D("0.30"))
    clock.advance(seconds=60)
    assert reserved(ledger) == (D(0), D(0))


def test_sqlite_purge_subtracts_what_it_deletes(tmp_path, clock):
    """(Redis expires its keys itself: its store has nothing to purge.)"""
    from collector.budgets.sqlite_store import SqliteLedgerStore

    ledger = Ledger(SqliteLedgerStore(tmp_path / "ledger.db"), BUDGETS, clock=clock)
    for index in range(5):
        check(ledger, span=f"a{index}")
    clock.advance(seconds=50)
    for index in range(3):
        check(ledger, span=f"b{index}")
    clock.advance(seconds=20)  # the a* reservations expired, the b* ones not
    ledger.store.purge(clock().timestamp())
    rows = ledger.store.run(
        lambda txn: txn._db.execute("SELECT COUNT(*) FROM budget_reservation").fetchone()[0], now=0
    )
    assert rows == 3 * 2  # the b* reservations, on the run and on the window
    assert reserved(ledger) == (D("0.03"), D("0.03"))
    clock.advance(seconds=2 * 3600)  # totals are kept an hour past their last reservation
    ledger.store.purge(clock().timestamp())
    totals = ledger.store.run(
        lambda txn: txn._db.execute("SELECT COUNT(*) FROM budget_reserved").fetchone()[0], now=0
    )
    assert totals == 0 and reserved(ledger) == (D(0), D(0))
    ledger.store.close()


def _forget_totals(store, backend: str) -> None:
    if backend == "sqlite":
        store.run(lambda txn: txn._db.execute("DELETE FROM budget_reserved"), now=0)
    else:
        for kind in ("rsvsum", "rsvexp"):
            names = list(store.client.scan_iter(f"{store.prefix}:{kind}:*"))
            if names:
                store.client.delete(*names)


LEGACY_SCHEMA = """
CREATE TABLE budget_spend (key TEXT PRIMARY KEY, usd TEXT NOT NULL, keep_until REAL NOT NULL);
CREATE TABLE budget_reservation (
    id TEXT NOT NULL, key TEXT NOT NULL, usd TEXT NOT NULL, expires_at REAL NOT NULL, PRIMARY KEY (id, key));
CREATE INDEX budget_reservation_by_key ON budget_reservation (key, expires_at);
CREATE TABLE budget_accounted (span_id TEXT PRIMARY KEY, keep_until REAL NOT NULL);
CREATE TABLE budget_run_block (
    run_key TEXT PRIMARY KEY, budget TEXT NOT NULL, step INTEGER NOT NULL, at REAL NOT NULL,
    keep_until REAL NOT NULL);
"""


def test_a_sqlite_ledger_of_the_older_schema_is_moved_over_with_its_rows(tmp_path, clock):
    """Files written before the totals (rowid tables, no budget_reserved) keep their spend,
    reservations in flight, counted span ids and blocked runs."""
    import sqlite3

    from collector.budgets.sqlite_store import SqliteLedgerStore

    path = tmp_path / "old.db"
    now = clock().timestamp()
    with sqlite3.connect(path) as old:
        old.executescript(LEGACY_SCHEMA)
        old.execute("INSERT INTO budget_spend VALUES (?, '0.25', ?)", (RUN, now + 1000))
        old.executemany(
            "INSERT INTO budget_reservation VALUES (?, ?, '0.05', ?)",
            [(rid, key, now + 30) for rid in ("x1", "x2") for key in (RUN, WINDOW)],
        )
        old.execute("INSERT INTO budget_accounted VALUES ('counted', ?)", (now + 1000,))
        blocked_run = (run_key("default", "r2"), now + 1000)
        old.execute("INSERT INTO budget_run_block VALUES (?, 'docs', 3, 1.0, ?)", blocked_run)
    old.close()
    ledger = Ledger(SqliteLedgerStore(path), BUDGETS, clock=clock)
    query = "SELECT name, sql FROM sqlite_master WHERE type = 'table'"
    tables = dict(ledger.store.run(lambda txn: txn._db.execute(query).fetchall(), now=0))
    assert all("WITHOUT ROWID" in sql for name, sql in tables.items() if name.startswith("budget_"))
    assert not any(name.endswith("_rowid") for name in tables)
    assert reserved(ledger) == (D("0.10"), D("0.10"))
    answer = check(ledger, span="n1", est="0.01", settle=(Settlement("x1", D("0.04")),))
    assert answer.run_spent_usd == D("0.29") and answer.run_remaining_usd == D("500") - D("0.29") - D("0.06")
    assert ledger.count_spans([]) == [] and ledger.store.run(lambda txn: txn.is_accounted("counted"), now=0)
    blocked = ledger.check(CheckRequest(run_id="r2", tenant="default", feature="docs", span_id="n2"))
    assert blocked.decision == "block" and "since step 3" in blocked.reason
    clock.advance(seconds=31)
    assert reserved(ledger) == (D("0.01"), D("0.01"))
    ledger.store.close()
    SqliteLedgerStore(path).close()  # opening it again changes nothing


def test_a_reservation_put_again_under_other_keys_leaves_nothing_on_the_old_ones(ledger, clock):
    # A check re-sent with the same span id after midnight reserves under another day's window.
    store, now = ledger.store, clock().timestamp()
    store.run(lambda txn: txn.put_reservation(Reservation("r", ("A", "B"), D("1"), now + 60)), now=now)
    store.run(lambda txn: txn.put_reservation(Reservation("r", ("A", "C"), D("1"), now + 60)), now=now)
    held = store.run(lambda txn: txn.reservation("r", now), now=now)
    assert held is not None and sorted(held.keys) == ["A", "C"]
    assert [reserved_on(ledger, key) for key in ("A", "B", "C")] == [D("1"), D("0"), D("1")]
    clock.advance(seconds=61)
    assert [reserved_on(ledger, key) for key in ("A", "B", "C")] == [D("0"), D("0"), D("0")]
