"""Budgets: nested per-run, daily and monthly limits, enforced at the collector.

The parts, each in its own module:

* `config`     the `budgets:` section of the collector's YAML (pydantic models, validation);
* `windows`    calendar windows in UTC and the injectable clock;
* `model`      the check's request and answer, reservations, run blocks;
* `decision`   the pure decision: given what the ledger holds, allow / warn / block;
* `ledger`     the two-phase reserve/settle algorithm over a storage transaction;
* `sqlite_store`, `redis_store`  the two storage backends behind one interface;
* `service`    the check API's core, shared by the gRPC servicer and the HTTP handler;
* `grpc_servicer`, `http_handler`, `stage`, `prometheus`  how the collector exposes it;
* `runtime`, `plugin`  assembly: what `collector/plugins.py` installs into the collector;
* `proto/`     `cognocient.budget.v1.BudgetService` and its generated code.

See docs/budgets.md.

This package imports nothing heavy on purpose: the agent-side client imports the generated
protobuf code from `collector.budgets.proto` without pulling in the collector.
"""
