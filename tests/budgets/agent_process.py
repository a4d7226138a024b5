"""An agent process for the end-to-end budget tests: `configure(endpoint=...)`, `instrument()`,
then one run of LLM calls through the real openai SDK until done or refused. Prints a JSON result.

python -m tests.budgets.agent_process --endpoint http://127.0.0.1:4317 --llm http://127.0.0.1:PORT
    --run-id ID --feature F --calls N [--max-tokens M] [--policy fail_open|fail_closed] [--go FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import openai
from opentelemetry import context, propagate, trace

import cognocient_otel
from cognocient_otel import BudgetExceeded


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--endpoint", "--llm", "--run-id", "--feature"):
        parser.add_argument(name, required=True)
    parser.add_argument("--calls", type=int, required=True)
    parser.add_argument("--max-tokens", type=int, default=4000)
    parser.add_argument("--policy", default="fail_open")
    parser.add_argument("--go", help="wait until this file exists, so that processes start together")
    parser.add_argument("--flush", action="store_true", help="export the spans before exiting")
    parser.add_argument(
        "--via-baggage",
        action="store_true",
        help="join the run as a sub-agent does: from W3C baggage in the incoming request headers",
    )
    args = parser.parse_args()

    cognocient_otel.configure(
        endpoint=args.endpoint, service_name="budget-agent", budget_failure_policy=args.policy
    )
    cognocient_otel.instrument()
    client = openai.OpenAI(base_url=args.llm + "/v1", api_key="test", max_retries=0)
    print(json.dumps({"ready": True}), flush=True)
    if args.go:
        deadline = time.monotonic() + 30
        while not os.path.exists(args.go) and time.monotonic() < deadline:
            time.sleep(0.005)
    result: dict[str, object] = {"sent": 0, "blocked_step": None, "reason": None}
    scope = cognocient_otel.run("splitter", feature=args.feature, run_id=args.run_id)
    if args.via_baggage:
        headers = {"baggage": f"cognocient.run.id={args.run_id},cognocient.feature={args.feature}"}
        context.attach(propagate.extract(headers))
        scope = cognocient_otel.run("splitter-sub-agent")
    with scope as run:
        result["run_id"] = run.id
        try:
            for _ in range(args.calls):
                client.chat.completions.create(
                    model="gpt-4o",
                    messages=[{"role": "user", "content": "next chunk"}],
                    max_tokens=args.max_tokens,
                )
                result["sent"] = int(result["sent"]) + 1
        except BudgetExceeded as refused:
            result["blocked_step"] = run.steps
            result["reason"] = refused.reason
        result["cost_usd"] = str(run.cost_usd)
    if args.flush:
        trace.get_tracer_provider().force_flush(10_000)
        remote = cognocient_otel.remote_budget.remote_guard()
        if remote is not None:
            remote.close()  # report the last settlements and release allowances
    print(json.dumps(result), flush=True)
    sys.stdout.flush()
    os._exit(0)  # skip exporter shutdown retries when the collector is down


if __name__ == "__main__":
    main()
