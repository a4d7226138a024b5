"""Where the instrumentation's per-call time goes: in our hooks, or in the SDK's own code around them.

    python bench/instrumentation_split.py [--rounds 30] [--calls 100]

`instrumentation_instructions.py` counts fewer instructions per call for ours than for openai-v2,
yet `instrumentation_overhead.py` measures more time. This script finds where the difference
lies. One process, the real `openai` client over a replaying transport (`llm_replay.py`: no
socket, no server thread), garbage collector off while timing, configurations interleaved in
shuffled order, each round's numbers per call:

* `hooks`: time inside our two hooks around `httpx2.Client.send` (`_begin`: recognise the
  request, start the span, plan the budget; `_after_send`: read the answer, cost, end the span);
* `send`: time inside `httpx2.Client.send` itself (the transport level);
* `sdk`: everything else in the call, i.e. the openai SDK's own code (build the request, parse
  the answer into its models). It runs the same code in every configuration, so its growth over
  the uninstrumented call is time our hooks add to code that is not ours.

Answers are not streamed: a streamed answer is read through our stream wrapper inside the SDK's
own iteration, which this split cannot tell apart from the SDK's code. Each number is the median
over rounds of that round's difference to `bare` (paired by round: the machine drifts between
rounds more than within one).

Configurations: `bare`; `ours` (in a `run()` with a budget, as in the overhead benchmark);
`ours, no-op tracer` (the same with a `NoOpTracerProvider`: no recording span); `control`: a
wrapper at the same place as ours that only spins in a loop for about as long as our hooks take,
which shows whether time spent there slows the SDK by itself; and `control (footprint)`: the
same, but it first does the work of ours that runs in libraries the SDK's call does not touch
(pydantic-core's parse of the request and the answer, `Decimal` arithmetic, a blake2 digest),
then spins for the rest, which shows what that wider spread of code costs the SDK. `openai-v2` is there for
reference: it wraps the SDK's `create` itself, so all its time shows as `sdk +`.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import random
import statistics
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx2
import wrapt
from instrumentation_overhead import MESSAGES, chat, new_provider
from llm_replay import record_answers, replay_client
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
from opentelemetry.trace import NoOpTracerProvider
from pydantic_core import from_json

import cognocient_otel
import cognocient_otel.httpx_patch as httpx_patch

PARTS = ("hooks", "send")


class Timers:
    """Nanoseconds spent in each part since the last `reset`, from wrappers around each part."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.spent = dict.fromkeys(PARTS, 0)

    def timed(self, part: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter_ns()
            try:
                return function(*args, **kwargs)
            finally:
                self.spent[part] += time.perf_counter_ns() - started

        return wrapper


class Control:
    """A wrapper on `httpx2.Client.send` that spins for about `micros` and then sends."""

    def __init__(self, timers: Timers, micros: float) -> None:
        self.timers = timers
        self.loops = self._calibrate(micros)
        self._saved: Any = None

    @staticmethod
    def _spin(loops: int) -> int:
        total = 0
        for i in range(loops):
            total += i
        return total

    def _calibrate(self, micros: float) -> int:
        started = time.perf_counter_ns()
        self._spin(100_000)
        per_loop = (time.perf_counter_ns() - started) / 100_000
        return max(1, int(micros * 1000 / per_loop))

    def _wrapper(self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        started = time.perf_counter_ns()
        self._spin(self.loops)
        self.timers.spent["hooks"] += time.perf_counter_ns() - started
        return wrapped(*args, **kwargs)

    def on(self) -> None:
        self._saved = httpx2.Client.send
        wrapt.wrap_function_wrapper(httpx2, "Client.send", self._wrapper)

    def off(self) -> None:
        httpx2.Client.send = self._saved


class FootprintControl(Control):
    """A control that first does, outside the SDK's own code paths, what ours does per call in
    other libraries, then spins for the rest of `micros`."""

    def __init__(self, timers: Timers, micros: float, request: bytes, answer: bytes) -> None:
        self.request, self.answer = request, answer
        for _ in range(200):
            self._work()
        started = time.perf_counter_ns()
        for _ in range(2000):
            self._work()
        self.work_micros = (time.perf_counter_ns() - started) / 2000 / 1000
        super().__init__(timers, max(1.0, micros - self.work_micros))

    def _work(self) -> float:
        answer = from_json(self.answer, cache_strings="keys")
        request = from_json(self.request, cache_strings="keys")
        usage = answer["usage"]
        estimate = Decimal("0.15") * len(self.request) + Decimal("0.6") * request["max_tokens"]
        cost = Decimal("0.15") * usage["prompt_tokens"] + Decimal("0.6") * usage["completion_tokens"]
        remaining = Decimal(1_000_000) - estimate + estimate - cost
        hashlib.blake2b(self.request, digest_size=8).hexdigest()
        return float(cost) + float(remaining)

    def _wrapper(self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        started = time.perf_counter_ns()
        self._work()
        self._spin(self.loops)
        self.timers.spent["hooks"] += time.perf_counter_ns() - started
        return wrapped(*args, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--calls", type=int, default=100, help="timed calls per configuration and round")
    args = parser.parse_args()

    timers = Timers()
    # Innermost first: ours then wraps the timed send, so `send` excludes our hooks.
    httpx2.Client.send = timers.timed("send", httpx2.Client.send)
    httpx_patch._begin = timers.timed("hooks", httpx_patch._begin)
    httpx_patch._after_send = timers.timed("hooks", httpx_patch._after_send)

    provider = new_provider()
    client = replay_client()
    theirs = OpenAIInstrumentor()
    scope: list[Any] = []

    def ours(tracer_provider: Any) -> tuple[Callable[[], None], Callable[[], None]]:
        def on() -> None:
            cognocient_otel.instrument(tracer_provider=tracer_provider)
            scope.append(cognocient_otel.run("bench", budget_usd=1_000_000))
            scope[-1].__enter__()

        def off() -> None:
            scope.pop().__exit__(None, None, None)
            cognocient_otel.uninstrument()

        return on, off

    configurations: dict[str, tuple[Callable[[], None], Callable[[], None]]] = {
        "bare": (lambda: None, lambda: None),
        "ours": ours(provider),
        "ours, no-op tracer": ours(NoOpTracerProvider()),
        "openai-v2": (lambda: theirs.instrument(tracer_provider=provider), lambda: theirs.uninstrument()),
    }
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in configurations}

    def measure(name: str) -> None:
        on, off = configurations[name]
        on()
        try:
            for _ in range(5):
                chat(client)
            gc.collect()
            gc.disable()
            timers.reset()
            started = time.perf_counter_ns()
            for _ in range(args.calls):
                chat(client)
            total = (time.perf_counter_ns() - started) / args.calls / 1000
            gc.enable()
        finally:
            off()
        hooks, send = (timers.spent[part] / args.calls / 1000 for part in PARTS)
        results[name].append((total, hooks, send))

    # The control spins for as long as our hooks took in a first, untimed pass.
    for name in ("bare", "ours"):
        measure(name)
    hooks_micros = statistics.median(row[1] for row in results["ours"])
    control = Control(timers, hooks_micros)
    configurations["control (spin)"] = (control.on, control.off)
    request = json.dumps({"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 20}).encode()
    footprint = FootprintControl(timers, hooks_micros, request, b"".join(record_answers()[False][1]))
    configurations["control (footprint)"] = (footprint.on, footprint.off)
    results = {name: [] for name in configurations}

    for _ in range(args.rounds):
        order = list(configurations)
        random.shuffle(order)
        for name in order:
            measure(name)

    def added(name: str, column: Callable[[tuple[float, float, float]], float]) -> float:
        """Median over rounds of (this configuration - bare) in the same round."""
        return statistics.median(
            column(row) - column(base) for row, base in zip(results[name], results["bare"], strict=True)
        )

    def sdk(row: tuple[float, float, float]) -> float:
        return row[0] - row[1] - row[2]

    bare = statistics.median(row[0] for row in results["bare"])
    print(f"not streamed, {args.rounds} rounds of {args.calls} calls; the uninstrumented call takes "
          f"{bare:.1f} us. Added per call, in microseconds (medians over rounds):")
    print(f"  {'configuration':20s} {'in all':>7s} {'hooks':>7s} {'send':>7s} {'sdk':>7s}")
    for name in configurations:
        if name == "bare":
            continue
        print(f"  {name:20s} {added(name, lambda row: row[0]):+7.1f} {added(name, lambda row: row[1]):7.1f} "
              f"{added(name, lambda row: row[2]):+7.1f} {added(name, sdk):+7.1f}")
    print(f"  (the footprint control's library work: {footprint.work_micros:.1f} us a call in a hot loop)")


if __name__ == "__main__":
    main()
