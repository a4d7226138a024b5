"""`cognocient.budget.v1.BudgetService` on the collector's OTLP gRPC port."""

from __future__ import annotations

import logging

import grpc
from google.protobuf.message import DecodeError

from .proto import budget_pb2
from .service import BadCheckRequest, BudgetChecker, request_from_message

__all__ = ["BudgetServicer", "add_budget_servicer"]

logger = logging.getLogger(__name__)

DECISIONS = {
    "allow": budget_pb2.DECISION_ALLOW,
    "warn": budget_pb2.DECISION_WARN,
    "block": budget_pb2.DECISION_BLOCK,
}


SERVICE = budget_pb2.DESCRIPTOR.services_by_name["BudgetService"].full_name


class BudgetServicer:
    """Takes the request's bytes and parses them itself: with the generated deserializer, bytes
    that are not a CheckRequest fail inside grpcio as INTERNAL with a logged traceback, where the
    caller must be told INVALID_ARGUMENT (its request is wrong, a retry will not help)."""

    def __init__(self, checker: BudgetChecker) -> None:
        self.checker = checker

    def Check(self, body: bytes, context: grpc.ServicerContext) -> budget_pb2.CheckResponse:
        try:
            request = budget_pb2.CheckRequest.FromString(body)
        except DecodeError as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"not a CheckRequest: {error}")
        try:
            check = request_from_message(request)
        except BadCheckRequest as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        try:
            answer = self.checker.check(check)
        except Exception:
            # The store failed (disk, Redis down): UNAVAILABLE lets the client apply its fail policy.
            logger.exception("budget check failed")
            context.abort(grpc.StatusCode.UNAVAILABLE, "the budget ledger is unavailable")
        response = budget_pb2.CheckResponse(
            decision=DECISIONS[answer.decision],
            reason=answer.reason,
            budget=answer.budget,
            run_spent_usd=float(answer.run_spent_usd),
            window=answer.window,
            reservation_id=answer.reservation_id,
            allowance_usd=float(answer.allowance_usd),
            reservation_ttl_seconds=answer.reservation_ttl_seconds,
        )
        if answer.run_remaining_usd is not None:
            response.run_remaining_usd = float(answer.run_remaining_usd)
        if answer.window_remaining_usd is not None:
            response.window_remaining_usd = float(answer.window_remaining_usd)
        if answer.limit_usd is not None:
            response.limit_usd = float(answer.limit_usd)
        if answer.committed_usd is not None:
            response.committed_usd = float(answer.committed_usd)
        return response


def add_budget_servicer(server: grpc.Server, checker: BudgetChecker) -> None:
    servicer = BudgetServicer(checker)
    check = grpc.unary_unary_rpc_method_handler(
        servicer.Check, request_deserializer=None,
        response_serializer=budget_pb2.CheckResponse.SerializeToString,
    )
    handlers = {"Check": check}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    # As the generated code does: grpcio finds a registered method without asking each generic
    # handler (the uncached check is on an LLM call's path).
    server.add_registered_method_handlers(SERVICE, handlers)
