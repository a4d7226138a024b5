"""A real gRPC server running the budget servicer on a free loopback port (for client tests)."""

from __future__ import annotations

from concurrent import futures

import grpc

from collector.budgets.grpc_servicer import add_budget_servicer
from collector.budgets.service import BudgetChecker


class BudgetGrpcServer:
    def __init__(self, checker: BudgetChecker) -> None:
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        add_budget_servicer(self.server, checker)
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> BudgetGrpcServer:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop(grace=None).wait(5)
