"""Per-call overhead of cognocient_otel vs the official opentelemetry-instrumentation-openai-v2.

    python bench/instrumentation_overhead.py [--rounds 25] [--calls 150]

Needs the `bench` extra (`pip install -e '.[bench]'`). The real `openai` client (3.x, httpx2)
calls the local fake LLM server, which runs in a subprocess so that its work does not share
this process's GIL. Three configurations are timed in the same run, interleaved in shuffled
order round after round:

* bare      -- no instrumentation;
* openai-v2 -- `OpenAIInstrumentor` (GenAI span only; no HTTP client spans);
* ours      -- `cognocient_otel.instrument()`, calls made inside a `run()` with a budget, so the
              cost, run attribution, headers and the in-process budget guard are all on the path.

Both instrumentations export to the same kind of provider: SDK TracerProvider, BatchSpanProcessor,
an exporter that drops the spans. Overhead = configuration - bare in the same round; the ratio
is median(ours overhead) / median(openai-v2 overhead), for non-streaming and streaming calls.

Then a micro-benchmark of the in-process budget decision (estimate pricing + ledger reservation
+ settlement) against two baselines measured in the same run: a dict lookup and one
`PriceBook.cost` call.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from decimal import Decimal

import openai
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import cognocient_otel
from cognocient_otel.budget import PlannedCall, RunBudgetGuard
from cognocient_otel.pricing import PriceBook, TokenUsage

MESSAGES = [{"role": "user", "content": "Summarise the quarterly report in three bullet points."}]
SERVER_SCRIPT = (
    "import sys\n"
    "from cognocient_otel.testing import LLMServer\n"
    "server = LLMServer().start()\n"
    "print(server.base_url, flush=True)\n"
    "sys.stdin.read()\n"
)


class DroppingExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def new_provider() -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(DroppingExporter(), schedule_delay_millis=1000))
    return provider


def chat(client: openai.OpenAI) -> None:
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=20)


def chat_stream(client: openai.OpenAI) -> None:
    for _ in client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        max_tokens=20,
        stream=True,
        stream_options={"include_usage": True},
    ):
        pass


class Configuration:
    def __init__(
        self, name: str, enable: Callable[[], None], disable: Callable[[], None], in_run: bool
    ) -> None:
        self.name, self.enable, self.disable, self.in_run = name, enable, disable, in_run


def configurations() -> list[Configuration]:
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    ours_provider, theirs_provider = new_provider(), new_provider()
    theirs = OpenAIInstrumentor()
    return [
        Configuration("bare", lambda: None, lambda: None, in_run=False),
        Configuration(
            "openai-v2",
            lambda: theirs.instrument(tracer_provider=theirs_provider),
            theirs.uninstrument,
            in_run=False,
        ),
        Configuration(
            "ours",
            lambda: cognocient_otel.instrument(tracer_provider=ours_provider),
            cognocient_otel.uninstrument,
            in_run=True,
        ),
    ]


def time_calls(
    call: Callable[[openai.OpenAI], None], client: openai.OpenAI, calls: int, in_run: bool
) -> float:
    """Mean seconds per call over `calls` calls (after a short warm-up)."""
    scope = cognocient_otel.run("bench", budget_usd=1_000_000) if in_run else None
    if scope is not None:
        scope.__enter__()
    try:
        for _ in range(5):
            call(client)
        start = time.perf_counter()
        for _ in range(calls):
            call(client)
        return (time.perf_counter() - start) / calls
    finally:
        if scope is not None:
            scope.__exit__(None, None, None)


def overhead_benchmark(base_url: str, rounds: int, calls: int) -> dict[str, dict[str, list[float]]]:
    client = openai.OpenAI(base_url=base_url + "/v1", api_key="bench", max_retries=0)
    configs = configurations()
    modes = {"non-streaming": chat, "streaming": chat_stream}
    results: dict[str, dict[str, list[float]]] = {mode: {c.name: [] for c in configs} for mode in modes}
    for round_index in range(rounds):
        for mode, call in modes.items():
            order = configs[:]
            random.shuffle(order)
            for config in order:
                config.enable()
                try:
                    results[mode][config.name].append(time_calls(call, client, calls, config.in_run))
                finally:
                    config.disable()
        print(f"  round {round_index + 1}/{rounds} done", file=sys.stderr)
    return results


def report_overhead(results: dict[str, dict[str, list[float]]]) -> None:
    print("Per-call overhead over an uninstrumented openai call (median over rounds, same run):")
    for mode, per_config in results.items():
        bare = per_config["bare"]
        ours = [o - b for o, b in zip(per_config["ours"], bare, strict=True)]
        theirs = [t - b for t, b in zip(per_config["openai-v2"], bare, strict=True)]
        ours_median, theirs_median = statistics.median(ours), statistics.median(theirs)
        print(
            f"  {mode:14s} bare {statistics.median(bare) * 1e3:7.3f} ms/call | "
            f"openai-v2 +{theirs_median * 1e3:6.3f} ms | ours +{ours_median * 1e3:6.3f} ms | "
            f"ratio ours/openai-v2 = {ours_median / theirs_median:5.2f}"
        )


def budget_decision_benchmark(iterations: int) -> None:
    price_book = PriceBook()
    guard = RunBudgetGuard()
    with cognocient_otel.run("budget-bench", budget_usd=1_000_000) as run:
        lookup = {"gpt-4o-mini": 1}
        usage = TokenUsage(input_tokens=250, output_tokens=20)

        def dict_lookup() -> None:
            lookup.get("gpt-4o-mini")

        def pricing_call() -> None:
            price_book.cost(model="gpt-4o-mini", usage=usage, provider="openai")

        def budget_decision() -> None:
            # What the hot path (LLMCall.plan and _settle) does per call: price the estimate
            # with the model's cached rate, reserve it, settle the cost.
            rate = price_book.rate(model="gpt-4o-mini", provider="openai")
            assert rate is not None
            estimate = rate.cost_of(250, 20)
            planned = PlannedCall(
                run.id, None, "budget-bench", "00f067aa0ba902b7", "gpt-4o-mini", "openai", "chat",
                250, 20, estimate, run,
            )
            guard.before_call(planned)
            guard.after_call(planned, estimate)

        timings = {name: [] for name in ("dict lookup", "PriceBook.cost", "budget decision")}
        for _ in range(7):
            for name, func in (
                ("dict lookup", dict_lookup),
                ("PriceBook.cost", pricing_call),
                ("budget decision", budget_decision),
            ):
                start = time.perf_counter()
                for _ in range(iterations):
                    func()
                timings[name].append((time.perf_counter() - start) / iterations)
    medians = {name: statistics.median(values) for name, values in timings.items()}
    print("In-process budget decision (estimate + reserve + settle), median of 7 x", iterations, "calls:")
    for name, value in medians.items():
        print(f"  {name:16s} {value * 1e6:7.2f} µs/call")
    print(
        f"  budget decision = {medians['budget decision'] / medians['PriceBook.cost']:.1f} x PriceBook.cost, "
        f"{medians['budget decision'] / medians['dict lookup']:.0f} x a dict lookup (target <= 10 µs)"
    )
    assert run.ledger.reserved == Decimal(0)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=25, help="interleaved repetitions (default 25)")
    parser.add_argument(
        "--calls", type=int, default=150, help="calls per configuration per round (default 150)"
    )
    parser.add_argument("--budget-iterations", type=int, default=20000)
    args = parser.parse_args()
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER_SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        base_url = server.stdout.readline().strip()
        print(f"openai {openai.__version__}, fake LLM server at {base_url} (subprocess)")
        results = overhead_benchmark(base_url, args.rounds, args.calls)
    finally:
        server.stdin.close()
        server.wait(timeout=10)
    report_overhead(results)
    budget_decision_benchmark(args.budget_iterations)


if __name__ == "__main__":
    main()
