"""The ledger on both backends (same tests): decisions, two-phase reserve/settle, once-per-span
accounting, expiry, windows rolling over, and atomicity under concurrent checks."""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from decimal import Decimal as D

import pytest

from collector.budgets.config import parse_budgets
from collector.budgets.ledger import Ledger
from collector.budgets.model import CheckRequest, Settlement, SpanCost

BUDGETS = parse_budgets(
    [
        {"name": "company", "scope": "global", "monthly_limit_usd": 100},
        {
            "name": "docs",
            "scope": "feature",
            "scope_value": "docs",
            "monthly_limit_usd": 2,
            "per_run_limit_usd": "0.50",
            "reservation_ttl_seconds": 60,
        },
        {"name": "search daily", "scope": "feature", "scope_value": "search", "daily_limit_usd": 1},
        {
            "name": "researcher watch",
            "scope": "agent",
            "scope_value": "researcher",
            "daily_limit_usd": "0.2",
            "enforcement": "warn",
        },
    ]
)


@pytest.fixture
def ledger(make_store, clock):
    return Ledger(make_store(), BUDGETS, clock=clock)


def call(run="r1", feature="docs", est="0.10", span="", **kw) -> CheckRequest:
    return CheckRequest(run_id=run, feature=feature, estimated_cost_usd=D(est), span_id=span, **kw)


def test_allow_reserves_and_reports_what_remains(ledger):
    answer = ledger.check(call(span="s1"))
    assert answer.decision == "allow" and answer.budget == ""
    assert answer.reservation_id == "s1" and answer.reservation_ttl_seconds == 60
    assert answer.run_spent_usd == 0 and answer.run_remaining_usd == D("0.40")
    assert answer.window == "monthly 2026-01" and answer.window_remaining_usd == D("1.90")
    # The reservation counts against the next check of the same run.
    again = ledger.check(call(span="s2"))
    assert again.run_remaining_usd == D("0.30")


def test_run_blocked_at_the_step_that_would_cross_and_stays_blocked(ledger):
    for step in range(1, 5):
        answer = ledger.check(
            call(
                span=f"a{step}",
                step=step,
                est="0.10",
                settle=(Settlement(f"a{step - 1}", D("0.10")),) if step > 1 else (),
            )
        )
        assert answer.decision == "allow", answer
    # Spent 0.30 and 0.10 in flight: a 0.15 call would cross 0.50.
    blocked = ledger.check(call(span="a5", step=5, est="0.15", settle=(Settlement("a4", D("0.10")),)))
    assert blocked.decision == "block" and blocked.budget == "docs"
    assert blocked.newly_blocked is not None and blocked.newly_blocked.step == 5
    assert blocked.run_spent_usd == D("0.40") and blocked.reservation_id == ""
    # Even a call that would fit is refused now: a blocked run stays blocked, and says why.
    tiny = ledger.check(call(span="a6", step=6, est="0.01"))
    assert tiny.decision == "block" and tiny.newly_blocked is None
    assert tiny.reason == "run is blocked by budget 'docs' since step 5"
    # Another run of the same feature goes on.
    assert ledger.check(call(run="r2", span="b1")).decision == "allow"


def test_window_limit_refuses_the_scope_until_the_next_month(ledger, clock):
    ledger.count_spans([SpanCost(f"x{i}", f"run{i}", D("0.45"), feature="docs") for i in range(4)])
    refused = ledger.check(call(run="new", span="n1", est="0.25"))
    assert refused.decision == "block" and refused.budget == "docs"
    assert refused.newly_blocked is None  # a window refusal does not block the run itself
    assert "monthly window 2026-01" in refused.reason
    assert ledger.check(call(run="other", feature="search", span="o1")).decision == "allow"
    clock.set(datetime(2026, 2, 1, 0, 0, 1, tzinfo=timezone.utc))
    assert ledger.check(call(run="new", span="n2", est="0.25")).decision == "allow"


def test_reserve_is_all_or_nothing_across_budgets(ledger):
    # search daily is $1; a refused call must not leave a reservation on the company budget.
    assert ledger.check(call(feature="search", span="big", est="1.50")).decision == "block"
    spend = {(b.name, w): s for b, w, _, s in ledger.window_spend()}
    assert spend[("company", "monthly")] == 0
    answer = ledger.check(call(feature="search", span="ok", est="1.00"))
    assert answer.decision == "allow" and answer.window_remaining_usd == 0


def test_settle_replaces_the_reservation_and_each_span_counts_once(ledger):
    ledger.check(call(span="s1", est="0.20"))
    # The call cost less than reserved; the settle arrives with the next check.
    nxt = ledger.check(call(span="s2", est="0.05", settle=(Settlement("s1", D("0.12")),)))
    assert nxt.run_spent_usd == D("0.12") and nxt.run_remaining_usd == D("0.33")
    # Its span arrives later (and twice, as exporters retry): not counted again.
    ledger.count_spans([SpanCost("s1", "r1", D("0.12"), feature="docs")] * 2)
    # A span of a call that never checked is counted once; a second settle of s1 changes nothing.
    ledger.count_spans([SpanCost("u1", "r1", D("0.01"), feature="docs")] * 2)
    answer = ledger.check(call(span="", est="0", settle=(Settlement("s1", D("0.12")),)))
    assert answer.run_spent_usd == D("0.13")
    spend = {(b.name, w): s for b, w, _, s in ledger.window_spend()}
    assert spend[("docs", "monthly")] == D("0.13") and spend[("company", "monthly")] == D("0.13")


def test_span_before_settle_is_counted_once(ledger):
    ledger.check(call(span="s1", est="0.20"))
    ledger.count_spans([SpanCost("s1", "r1", D("0.15"), feature="docs")])
    answer = ledger.check(call(span="", est="0", settle=(Settlement("s1", D("0.15")),)))
    assert answer.run_spent_usd == D("0.15") and answer.run_remaining_usd == D("0.35")


def test_unsettled_reservation_expires(ledger, clock):
    ledger.check(call(span="lost", est="0.45"))
    assert ledger.check(call(span="s2", est="0.10")).decision == "block"
    clock.advance(seconds=61)
    assert ledger.check(call(run="r1b", span="s3", est="0.10")).decision == "allow"
    # r1 was blocked by the attempt above: blocking is sticky even after the reservation expired.
    assert ledger.check(call(span="s4", est="0.01")).decision == "block"


def test_ingested_spans_block_a_run_that_crossed(ledger):
    blocked = ledger.count_spans(
        [SpanCost(f"p{i}", "r9", D("0.20"), feature="docs", step=i) for i in (1, 2, 3)]
    )
    assert [(span.span_id, block.budget, block.step) for span, block in blocked] == [("p3", "docs", 3)]
    assert ledger.check(call(run="r9", span="p4", est="0")).decision == "block"
    spent, block = ledger.run_state(tenant="", run_id="r9")
    assert spent == D("0.60") and block.step == 3


def test_warn_budget_never_refuses(ledger):
    answer = ledger.check(call(feature="misc", agent="researcher", span="w1", est="0.30"))
    assert answer.decision == "warn" and answer.budget == "researcher watch"
    assert answer.reservation_id == "w1"  # the call goes ahead, so it is reserved


def _docs_per_run_ledger(make_store, clock) -> Ledger:
    """A ledger with one budget: feature `docs`, at most $0.50 a run."""
    return Ledger(
        make_store(),
        parse_budgets(
            [{"name": "docs", "scope": "feature", "scope_value": "docs", "per_run_limit_usd": "0.50"}]
        ),
        clock=clock,
    )


def test_allowance_is_bounded_by_headroom_and_spent_down_by_settles(make_store, clock):
    ledger = _docs_per_run_ledger(make_store, clock)
    answer = ledger.check(call(span="g1", est="0.10", allowance_usd=D("1")))
    assert answer.allowance_usd == D("0.40")  # the run's 0.50 minus this call
    assert ledger.check(call(run="r1", span="x", est="0.01")).decision == "block"
    # Two calls spent from the allowance; their settles release their parts only.
    ledger.check(
        call(
            span="",
            est="0",
            settle=(
                Settlement("g1", D("0.10"), "g1", D("0.10")),
                Settlement("l2", D("0.10"), "g1", D("0.10")),
            ),
        )
    )
    # 0.20 spent, 0.30 still held by the allowance: nothing left for another process of r1.
    assert ledger.check(call(span="y", est="0.01")).decision == "block"


def test_a_settlement_sent_again_takes_its_part_of_an_allowance_once(make_store, clock):
    # A check that timed out at the agent after the collector applied it is sent again with the
    # same settlements: the allowance's reservation must shrink by each call's part once only.
    ledger = _docs_per_run_ledger(make_store, clock)
    assert ledger.check(call(span="g1", est="0.10", allowance_usd=D("1"))).allowance_usd == D("0.40")
    settled = (Settlement("g1", D("0.10"), "g1", D("0.10")), Settlement("l2", D("0.10"), "g1", D("0.10")))
    for _ in range(2):
        ledger.check(call(span="", est="0", settle=settled))
    # 0.20 spent; the allowance still holds 0.30 (three more calls of the agent's), not 0.10.
    assert ledger.check(call(span="y", est="0.01")).decision == "block"
    assert ledger.run_state(tenant="", run_id="r1")[0] == D("0.20")


def test_release_frees_an_unused_allowance(ledger):
    ledger.check(call(span="g1", est="0.10", allowance_usd=D("1")))
    answer = ledger.check(call(span="g2", est="0.10", release=("g1",)))
    assert answer.decision == "allow" and answer.run_remaining_usd == D("0.40")


def test_concurrent_checks_cannot_both_take_the_last_dollar(make_store, clock):
    budgets = parse_budgets(
        [{"name": "tight", "scope": "feature", "scope_value": "docs", "monthly_limit_usd": 1}]
    )
    ledgers = [Ledger(make_store(), budgets, clock=clock) for _ in range(4)]
    results: list[str] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        for attempt in range(6):
            answer = ledgers[index % 4].check(
                call(run=f"r{index}-{attempt}", span=f"s{index}-{attempt}", est="0.07")
            )
            with lock:
                results.append(answer.decision)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 48
    assert results.count("allow") == 14  # floor(1 / 0.07): never one more


def test_two_processes_share_the_sqlite_ledger_atomically(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from collector.budgets.sqlite_store import SqliteLedgerStore

    path = tmp_path / "shared.db"
    SqliteLedgerStore(path).close()  # create the schema once
    root = Path(__file__).resolve().parents[2]
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.budgets.ledger_worker", str(path), name, "40"],
            cwd=root,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in ("p1", "p2")
    ]
    allowed = [int(worker.communicate(timeout=60)[0]) for worker in workers]
    # 80 calls of $0.03 against $1.00 a month: exactly 33 fit, however the two processes interleave.
    # The run both processes share is held to its $0.50 (16 calls) as one run.
    assert sum(allowed) == 33
    ledger = Ledger(SqliteLedgerStore(path), [])
    assert ledger.store.run(lambda txn: txn.reserved("run//shared-run", 0), now=0) == D("0.48")


def test_no_budget_applies_grants_an_unlimited_allowance_for_a_while(make_store, clock):
    ledger = Ledger(make_store(), BUDGETS[1:], clock=clock)
    answer = ledger.check(call(feature="misc", span="m1", est="5", allowance_usd=D("20")))
    assert answer.decision == "allow" and answer.reason == "no budget applies"
    assert answer.allowance_usd == D(1_000_000) and answer.reservation_ttl_seconds == 60
    assert (
        answer.reservation_id == ""
        and answer.run_remaining_usd is None
        and answer.window_remaining_usd is None
    )


def test_allowance_takes_only_a_share_of_a_shared_window(ledger):
    # docs has $2 a month: an allowance may hold a tenth of what is left after this call.
    answer = ledger.check(call(span="g1", est="0.10", allowance_usd=D("1")))
    assert answer.allowance_usd == D("0.19")
    # Near the window's end it shrinks below one call: no allowance, every call is checked.
    ledger.count_spans([SpanCost("big", "other", D("1.60"), feature="docs")])
    assert ledger.check(call(run="r9", span="g2", est="0.02", allowance_usd=D("1"))).allowance_usd == 0


def test_a_run_blocked_for_looping_is_refused_without_a_per_run_limit(make_store, clock):
    from collector.budgets.ledger import run_key
    from collector.budgets.model import RunBlock

    budgets = parse_budgets(
        [
            {
                "name": "loops",
                "scope": "feature",
                "scope_value": "docs",
                "monthly_limit_usd": 50,
                "on_loop": "block",
            }
        ]
    )
    ledger = Ledger(make_store(), budgets, clock=clock)
    assert ledger.check(call(run="looper", span="l1")).decision == "allow"
    # What the waste stage does when it flags the run `loop` (collector/waste/loop_block.py).
    ledger.store.run(
        lambda txn: txn.set_run_block(run_key("", "looper"), RunBlock("loops", 3, 0.0), keep_until=1e12),
        now=clock().timestamp(),
    )
    refused = ledger.check(call(run="looper", span="l2"))
    assert refused.decision == "block" and refused.reason == "run is blocked by budget 'loops' since step 3"
    assert ledger.check(call(run="other", span="o1")).decision == "allow"
