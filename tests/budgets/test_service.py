"""The check API over real transports: gRPC (servicer + client) and the HTTP handler."""

from __future__ import annotations

import json
from decimal import Decimal as D

import grpc
import pytest

from cognocient_otel.budget_client import BudgetClient
from cognocient_otel.budget_client.client import PendingSettlement
from collector.budgets.config import parse_budgets
from collector.budgets.http_handler import handle_check
from collector.budgets.ledger import Ledger
from collector.budgets.proto import budget_pb2, budget_pb2_grpc
from collector.budgets.service import BudgetChecker
from collector.budgets.sqlite_store import SqliteLedgerStore

from .servers import BudgetGrpcServer

BUDGETS = parse_budgets(
    [
        {"name": "docs", "scope": "feature", "scope_value": "docs", "per_run_limit_usd": "0.50"},
        {"name": "docs monthly", "scope": "feature", "scope_value": "docs", "monthly_limit_usd": 10},
    ]
)


@pytest.fixture
def checker(tmp_path, clock):
    blocked = []
    ledger = Ledger(SqliteLedgerStore(tmp_path / "ledger.db"), BUDGETS, clock=clock)
    checker = BudgetChecker(
        ledger, on_run_blocked=lambda key, block, feature, agent: blocked.append((key, block))
    )
    checker.blocked = blocked
    yield checker
    ledger.store.close()


@pytest.fixture
def server(checker):
    with BudgetGrpcServer(checker) as server:
        yield server


def test_grpc_check_allows_then_blocks_the_run(server, checker):
    client = BudgetClient(server.endpoint, timeout_seconds=2)
    first = client.check(
        run_id="r1", feature="docs", agent="a", estimated_cost_usd=D("0.30"), span_id="s1", step=1
    )
    assert first.decision == "allow" and first.reachable
    assert first.run_remaining_usd == D("0.2") and first.window == "monthly 2026-01"
    assert first.window_remaining_usd == D("9.7") and first.reservation_id == "s1"
    client.report(PendingSettlement("s1", D("0.35"), "s1", D("0.30")))
    second = client.check(
        run_id="r1", feature="docs", agent="a", estimated_cost_usd=D("0.20"), span_id="s2", step=2
    )
    assert second.decision == "block" and second.budget == "docs"
    assert (
        second.run_spent_usd == D("0.35")
        and second.limit_usd == D("0.5")
        and second.committed_usd == D("0.35")
    )
    assert "would exceed $0.50" in second.reason
    # The servicer told the rollup, once, with the default tenant the collector files spans under.
    assert [(key, block.step) for key, block in checker.blocked] == [(("default", "r1"), 2)]
    assert checker.counters.blocked_calls.get(("docs",)) == 1
    assert checker.counters.decisions.get(("", "allow")) == 1
    client.close()


def test_grpc_bad_request_is_invalid_argument(server):
    with grpc.insecure_channel(server.endpoint) as channel:
        stub = budget_pb2_grpc.BudgetServiceStub(channel)
        with pytest.raises(grpc.RpcError) as error:
            stub.Check(budget_pb2.CheckRequest(feature="docs", estimated_cost_usd=0.1), timeout=2)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details() == "run_id: required (the run's id, cognocient.run.id)"
    client = BudgetClient(server.endpoint, timeout_seconds=2)
    with pytest.raises(ValueError, match="estimated_cost_usd: must be"):
        client.check(run_id="r", estimated_cost_usd=D(-1))
    client.close()


def test_unreachable_collector_applies_the_policy():
    from collector.process import free_port

    endpoint = f"127.0.0.1:{free_port()}"
    open_client = BudgetClient(endpoint, timeout_seconds=0.2)
    answer = open_client.check(run_id="r", estimated_cost_usd=D(1), span_id="s")
    assert answer.decision == "allow" and not answer.reachable and "fail_open" in answer.reason
    closed_client = BudgetClient(f"http://{endpoint}", timeout_seconds=0.2, failure_policy="fail_closed")
    assert closed_client.check(run_id="r").decision == "block"
    # Settlements that could not be sent stay queued for the next check.
    closed_client.report(PendingSettlement("s", D(1), "s", D(1)))
    assert not closed_client.flush() and closed_client.has_pending()


def http(checker, body, content_type="application/json"):
    status, headers, payload = handle_check(
        checker, body if isinstance(body, bytes) else json.dumps(body).encode(), content_type
    )
    assert headers["Content-Type"] == "application/json"
    return status, json.loads(payload)


def test_http_check_answers_and_settles(checker):
    status, answer = http(
        checker, {"run_id": "h1", "feature": "docs", "agent": "a", "estimated_cost_usd": 0.1, "span_id": "x1"}
    )
    assert status == 200
    assert (
        answer["decision"] == "allow" and answer["run_remaining_usd"] == 0.4 and answer["run_spent_usd"] == 0
    )
    status, answer = http(
        checker,
        {
            "run_id": "h1",
            "feature": "docs",
            "estimated_cost_usd": "0.45",
            "settle": [{"span_id": "x1", "actual_cost_usd": 0.1}],
        },
    )
    assert status == 200 and answer["decision"] == "block" and answer["run_spent_usd"] == 0.1


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b"{not json", 400, "body is not valid JSON"),
        ([1, 2], 400, "body must be a JSON object"),
        ({"feature": "docs"}, 400, "run_id: required"),
        ({"run_id": "r", "estimated_cost_usd": "lots"}, 400, "estimated_cost_usd: must be a number of USD"),
        (
            {"run_id": "r", "estimated_cost_usd": -0.5},
            400,
            "estimated_cost_usd: must be an amount >= 0",
        ),
        ({"run_id": "r", "estimated_cost_usd": "9" * 65}, 400, "estimated_cost_usd: must be a number of USD"),
        (b'{"run_id": "r", "estimated_cost_usd": NaN}', 400, "estimated_cost_usd: must be an amount >= 0"),
        (
            {"run_id": "r", "settle": [{"span_id": "s", "actual_cost_usd": -1}]},
            400,
            "settle[0].actual_cost_usd: must be an amount >= 0",
        ),
        (b'{"run_id": "\\ud800"}', 400, "run_id: not valid Unicode text"),
        (b'{"run_id": "r", "tenant": "t\\udfff"}', 400, "tenant: not valid Unicode text"),
        (b'{"run_id": "r", "release": ["\\ud800"]}', 400, "release[0]: not valid Unicode text"),
        (b'{"run_id": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, "body is not valid JSON"),
        ({"run_id": "r", "settle": [{"actual_cost_usd": 1}]}, 400, "settle[0].span_id: required"),
        ({"run_id": "r", "settle": {"span_id": "x"}}, 400, "settle and release must be lists"),
        ({"run_id": "r", "step": "two"}, 400, "step: must be an integer >= 0"),
        ({"run_id": 7}, 400, "run_id: must be a string, got int"),
        ({"run_id": "r", "estimate": 1}, 400, "unknown field(s) estimate"),
    ],
)
def test_http_bad_input_gets_400_with_a_json_error(checker, body, status, error):
    got_status, answer = http(checker, body)
    assert got_status == status and answer["error"].startswith(error), answer


def test_a_settlement_beyond_one_call_is_left_out_and_spends_nothing(checker):
    # An unbounded amount once held every run of the window blocked at "$1E+999999" for good.
    first = {"run_id": "h2", "feature": "docs", "estimated_cost_usd": 0.01, "span_id": "s"}
    status, answer = http(checker, first)
    assert status == 200 and answer["decision"] == "allow"
    for amount in (b"1e999999", b"1000000.01"):
        bad = b'{"settle": [{"span_id": "s", "actual_cost_usd": ' + amount + b'}, {"span_id": "t"}]}'
        status, answer = http(checker, bad)
        assert status == 200, answer  # the rest of the check goes through
    status, answer = http(checker, {"run_id": "h3", "feature": "docs", "estimated_cost_usd": 0.01})
    assert status == 200 and answer["decision"] == "allow"
    # h2's reservation is held still (settled at 0 it would be 10, at the amount sent: blocked)
    assert D(str(answer["window_remaining_usd"])) == D("9.99")


def test_an_estimate_or_allowance_beyond_one_call_counts_as_one_call_of_the_bound(checker):
    for estimate in ("1e999999999", 1_000_001, "Infinity"):
        status, answer = http(checker, {"run_id": "big", "feature": "docs", "estimated_cost_usd": estimate})
        assert status == 200 and answer["decision"] == "block", estimate
        assert answer["budget"] in ("docs", "docs monthly") and answer["run_spent_usd"] == 0
    status, answer = http(checker, {"run_id": "r", "allowance_usd": 1e300})
    assert status == 200 and answer["decision"] == "allow"


def test_grpc_bytes_that_are_no_check_request_are_invalid_argument(server):
    with grpc.insecure_channel(server.endpoint) as channel:
        check = channel.unary_unary("/cognocient.budget.v1.BudgetService/Check")
        with pytest.raises(grpc.RpcError) as error:
            check(b"\xff" * 20, timeout=2)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.value.details().startswith("not a CheckRequest")
        stub = budget_pb2_grpc.BudgetServiceStub(channel)
        settle = budget_pb2.Settlement(span_id="s", actual_cost_usd=float("inf"))
        answer = stub.Check(budget_pb2.CheckRequest(run_id="g", settle=[settle]), timeout=2)
        assert answer.decision == budget_pb2.DECISION_ALLOW  # the settlement is left out


def test_a_settlement_the_collector_refuses_is_not_sent_again(server):
    # Re-queued, it was refused again with every later check of the process.
    client = BudgetClient(server.endpoint, timeout_seconds=2)
    client.report(PendingSettlement("s", D(-1), "s", D(1)))
    with pytest.raises(ValueError, match="actual_cost_usd: must be an amount >= 0"):
        client.check(run_id="r")
    assert not client.has_pending()
    assert client.check(run_id="r").decision == "allow"
    client.close()


def test_http_refuses_other_content_types(checker):
    status, answer = http(checker, b"run_id=r", "application/x-www-form-urlencoded")
    assert status == 415 and "application/json" in answer["error"]
