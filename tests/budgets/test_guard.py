"""The agent-side guard against a real gRPC budget service: allowances spent locally never
exceed what the collector granted, a block sticks, settlements reach the collector."""

from __future__ import annotations

import threading
import uuid
from decimal import Decimal as D

import pytest

from cognocient_otel.budget.guard import PlannedCall
from cognocient_otel.budget_client import BudgetClient, RemoteBudgetGuard
from collector.budgets.config import parse_budgets
from collector.budgets.ledger import Ledger
from collector.budgets.service import BudgetChecker
from collector.budgets.sqlite_store import SqliteLedgerStore

from .servers import BudgetGrpcServer

BUDGETS = parse_budgets(
    [
        {"name": "docs run", "scope": "feature", "scope_value": "docs", "per_run_limit_usd": "1.00"},
        {"name": "docs month", "scope": "feature", "scope_value": "docs", "monthly_limit_usd": "3.00"},
        {"name": "big run", "scope": "feature", "scope_value": "big", "per_run_limit_usd": "1.50"},
    ]
)


@pytest.fixture
def service(tmp_path, clock):
    ledger = Ledger(SqliteLedgerStore(tmp_path / "ledger.db"), BUDGETS, clock=clock)
    checker = BudgetChecker(ledger)
    with BudgetGrpcServer(checker) as server:
        server.checker = checker
        yield server
    ledger.store.close()


def planned(run_id: str, estimate: str, feature: str = "docs") -> PlannedCall:
    return PlannedCall(
        run_id=run_id,
        feature=feature,
        agent="a",
        span_id=uuid.uuid4().hex[:16],
        model="m",
        provider="openai",
        operation="chat",
        estimated_input_tokens=10,
        estimated_output_tokens=10,
        estimated_cost_usd=D(estimate),
    )


def remote_checks(service) -> int:
    return int(sum(value for _, value in service.checker.counters.decisions.items()))


def test_allowance_saves_round_trips_and_the_block_comes_at_the_crossing_call(service):
    guard = RemoteBudgetGuard(
        BudgetClient(service.endpoint, timeout_seconds=2), allowance_calls=4, flush_interval_seconds=0
    )
    decisions = []
    for _ in range(12):
        call = planned("r1", "0.10")
        decision = guard.before_call(call)
        decisions.append(decision.kind)
        if decision.allowed:
            guard.after_call(call, D("0.10"))
    # $1.00 per run at $0.10 a call: ten calls, then the block.
    assert decisions == ["allow"] * 10 + ["block", "block"]
    assert remote_checks(service) < 8  # most calls were taken from allowances
    guard.client.flush()
    spent, block = service.checker.ledger.run_state(tenant="default", run_id="r1")
    assert spent == D("1.00") and block is not None and block.budget == "docs run"
    guard.close()


def test_threads_of_many_runs_never_overspend_the_shared_window(service):
    # Four processes' worth of guards (one client each) share the $3.00 monthly window.
    guards = [
        RemoteBudgetGuard(
            BudgetClient(service.endpoint, timeout_seconds=5), allowance_calls=3, flush_interval_seconds=0
        )
        for _ in range(4)
    ]
    allowed = []
    lock = threading.Lock()

    def agent(index: int) -> None:
        guard = guards[index % 4]
        for step in range(15):
            call = planned(f"run-{index}", "0.07")
            if guard.before_call(call).allowed:
                with lock:
                    allowed.append(call.estimated_cost_usd)
                guard.after_call(call, D("0.07"))
            if step % 5 == 4:
                guard.client.flush()

    threads = [threading.Thread(target=agent, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sum(allowed) <= D("3.00")
    assert sum(allowed) >= D("2.50")  # allowances are released, not leaked, so the window fills up
    for guard in guards:
        guard.close()


def test_block_is_not_bypassed_by_what_is_left_of_an_allowance(service):
    guard = RemoteBudgetGuard(
        BudgetClient(service.endpoint, timeout_seconds=2), allowance_calls=2, flush_interval_seconds=0
    )
    first = planned("r2", "0.30")
    assert guard.before_call(first).allowed  # reserves 0.30 + an allowance of 0.60
    guard.after_call(first, D("0.30"))
    big = planned("r2", "0.90")
    assert guard.before_call(big).kind == "block"
    assert guard.before_call(planned("r2", "0.01")).kind == "block"
    guard.close()


def test_settlements_are_flushed_in_the_background(service):
    guard = RemoteBudgetGuard(
        BudgetClient(service.endpoint, timeout_seconds=2), allowance_calls=0, flush_interval_seconds=0.05
    )
    call = planned("r3", "0.20")
    assert guard.before_call(call).allowed
    guard.after_call(call, D("0.15"))
    import time

    deadline = time.monotonic() + 5
    while service.checker.ledger.run_state(tenant="default", run_id="r3")[0] != D("0.15"):
        assert time.monotonic() < deadline, "the settlement never reached the collector"
        time.sleep(0.02)
    guard.close()


def test_collector_down_fail_open_and_fail_closed():
    from collector.process import free_port

    endpoint = f"127.0.0.1:{free_port()}"
    open_guard = RemoteBudgetGuard(BudgetClient(endpoint, timeout_seconds=0.1), flush_interval_seconds=0)
    call = planned("r4", "0.10")
    assert open_guard.before_call(call).kind == "allow"
    open_guard.after_call(call, D("0.10"))  # nothing was reserved: nothing to settle
    closed_guard = RemoteBudgetGuard(
        BudgetClient(endpoint, timeout_seconds=0.1, failure_policy="fail_closed"), flush_interval_seconds=0
    )
    refused = closed_guard.before_call(planned("r4", "0.10"))
    assert refused.kind == "block" and "unreachable" in refused.reason and "fail_closed" in refused.reason


def test_calls_costing_more_than_estimated_use_up_the_allowance_faster(service):
    guard = RemoteBudgetGuard(
        BudgetClient(service.endpoint, timeout_seconds=2), allowance_calls=4, flush_interval_seconds=0
    )
    spent = D(0)
    sent = 0
    while sent < 50:
        call = planned("r5", "0.05", feature="big")  # each call really costs 0.20, not 0.05
        if not guard.before_call(call).allowed:
            break
        guard.after_call(call, D("0.20"))
        spent += D("0.20")
        sent += 1
    # The $1.00 run limit is overshot by the last call's overrun at most, never by the sum of
    # the overruns of the calls an allowance covered.
    assert spent <= D("1.50") + D("0.20") - D("0.05"), (sent, spent)
    guard.close()


def test_an_idle_allowance_is_released_for_other_runs(service):
    guard = RemoteBudgetGuard(
        BudgetClient(service.endpoint, timeout_seconds=2),
        allowance_calls=4,
        flush_interval_seconds=0.05,
        idle_release_seconds=0.1,
    )
    call = planned("r6", "0.10")
    assert guard.before_call(call).allowed
    guard.after_call(call, D("0.10"))
    ledger = service.checker.ledger
    held = ledger.store.run(lambda txn: txn.reserved("run/default/r6", 0), now=ledger.clock().timestamp())
    assert held > 0  # the allowance for the run's next calls
    import time

    deadline = time.monotonic() + 5
    while ledger.store.run(lambda txn: txn.reserved("run/default/r6", 0), now=ledger.clock().timestamp()) > 0:
        assert time.monotonic() < deadline, "the idle allowance was never released"
        time.sleep(0.02)
    assert ledger.run_state(tenant="default", run_id="r6")[0] == D("0.10")
    guard.close()


def test_a_release_never_overtakes_the_settlements_of_its_allowance(service):
    # Two runs in two threads of one process (one client). Run B's check carries the settlements
    # of run A's allowance calls; the collector holds it (a busy machine) while run A's next call
    # finds its allowance used up and releases it. The release must not reach the ledger before
    # those settlements: a settlement whose reservation is gone is not counted, so the shared
    # window would lose that spend and allow calls beyond its limit (the overspend of
    # test_threads_of_many_runs_never_overspend_the_shared_window under load).
    checker = service.checker
    real_check = checker.check
    b_arrived, b_may_go = threading.Event(), threading.Event()

    def held_check(request):
        if request.run_id == "B":
            b_arrived.set()
            assert b_may_go.wait(10)
        return real_check(request)

    checker.check = held_check
    guard = RemoteBudgetGuard(
        BudgetClient(service.endpoint, timeout_seconds=5), allowance_calls=3, flush_interval_seconds=0
    )
    for _ in range(4):  # one check granting three more calls, then those three from the allowance
        call = planned("A", "0.07")
        assert guard.before_call(call).allowed
        guard.after_call(call, D("0.07"))
    assert remote_checks(service) == 1
    b_call = planned("B", "0.07")
    b_thread = threading.Thread(target=guard.before_call, args=(b_call,))
    b_thread.start()  # takes run A's four queued settlements with it
    assert b_arrived.wait(10)
    call = planned("A", "0.07")
    assert guard.before_call(call).allowed  # the allowance is used up: released, and a new check
    guard.after_call(call, D("0.07"))
    b_may_go.set()
    b_thread.join(10)
    guard.after_call(b_call, D("0.07"))
    assert guard.client.flush()
    ledger = checker.ledger
    assert ledger.run_state(tenant="default", run_id="A")[0] == D("0.35")
    assert ledger.run_state(tenant="default", run_id="B")[0] == D("0.07")
    month = {budget.name: spend for budget, _, _, spend in ledger.window_spend()}
    assert month["docs month"] == D("0.42")
    guard.close()
    held = ledger.store.run(lambda txn: txn.reserved("run/default/A", 0), now=ledger.clock().timestamp())
    assert held == 0  # every allowance of run A was released in the end


def test_a_check_with_arguments_that_make_no_request_keeps_the_queued_reports(service):
    from cognocient_otel.budget_client.client import PendingSettlement

    client = BudgetClient(service.endpoint, timeout_seconds=2)
    client.report(PendingSettlement("s1", D("0.10"), "s1", D("0.20")))
    client.release("a1")
    with pytest.raises(TypeError):
        client.check(run_id=123)  # type: ignore[arg-type]
    assert client.has_pending()  # nothing was taken out of the queues and lost
    assert client.flush()
    assert not client.has_pending()
    client.close()
