"""Instructions per call added by cognocient_otel vs the official openai-v2 instrumentation.

    python bench/instrumentation_instructions.py [--calls 30] [--simulate-caches]

A companion to `instrumentation_overhead.py` that does not depend on how busy the machine is:
it counts the CPU instructions executed per call with valgrind's callgrind (Debian package
`valgrind`), so the same code gives the same numbers run after run. Each configuration (bare,
openai-v2, ours in a `run()` with a budget) runs in its own process under callgrind: the real
`openai` client calls through a transport that replays answers recorded from `LLMServer` (so no
socket and no server thread are counted), and only the timed calls are counted (callgrind
collects inside `itertools.starmap`, which drives them). The garbage collector is off while
counting, so a collection that happens to land in the window does not skew one configuration.

It measures CPU work only. The wall-clock benchmark also sees cache and scheduling effects, but
on a quiet machine time follows these counts closely. `--simulate-caches` adds callgrind's cache
and branch simulation (L1i 64 KiB, L1d 48 KiB and a 2 MiB last level, as one core of the
development machine has; valgrind's simple branch predictor) and prints the misses and
mispredicts each configuration adds per call: where a VM has no hardware counters, this is the
only view of them.
"""

from __future__ import annotations

import argparse
import collections
import gc
import itertools
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

CONFIGS = ("bare", "openai-v2", "ours")
MODES = ("non-streaming", "streaming")


def child(config: str, mode: str, calls: int) -> None:
    """Runs under callgrind: set up, warm up, then the counted calls."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from instrumentation_overhead import DroppingExporter, chat, chat_stream
    from llm_replay import replay_client
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    import cognocient_otel

    provider = TracerProvider()
    # Never full, never exporting while counting: the worker thread stays asleep.
    provider.add_span_processor(
        BatchSpanProcessor(
            DroppingExporter(), max_queue_size=10**7, max_export_batch_size=10**7, schedule_delay_millis=10**7
        )
    )
    client = replay_client()
    scope = None
    if config == "openai-v2":
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(tracer_provider=provider)
    elif config == "ours":
        cognocient_otel.instrument(tracer_provider=provider)
        scope = cognocient_otel.run("bench", budget_usd=1_000_000)
        scope.__enter__()
    call = chat if mode == "non-streaming" else chat_stream
    for _ in range(20):
        call(client)
    gc.collect()
    gc.disable()
    collections.deque(itertools.starmap(call, itertools.repeat((client,), calls)), maxlen=0)
    gc.enable()
    if scope is not None:
        scope.__exit__(None, None, None)


# One core of the development machine: L1i 64 KiB 16-way, L1d 48 KiB 12-way, L2 2 MiB 16-way.
CACHE_OPTIONS = ("--cache-sim=yes", "--branch-sim=yes", "--I1=65536,16,64", "--D1=49152,12,64",
                 "--LL=2097152,16,64")
# callgrind's event names, shown as
SIMULATED = {"Ir": "instructions", "I1mr": "L1i misses", "D1mr": "L1d read misses",
             "D1mw": "L1d write misses", "ILmr": "L2 misses (code)", "DLmr": "L2 read misses",
             "DLmw": "L2 write misses", "Bcm": "mispredicted branches", "Bim": "mispredicted indirect jumps"}


def count(config: str, mode: str, calls: int, simulate: bool = False) -> dict[str, float]:
    """Events per counted call: `Ir` (instructions), and the simulated ones with `simulate`."""
    with tempfile.TemporaryDirectory() as directory:
        out_file = os.path.join(directory, "callgrind.out")
        result = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                *(CACHE_OPTIONS if simulate else ()),
                "--collect-atstart=no",
                "--toggle-collect=starmap_next",
                f"--callgrind-out-file={out_file}",
                sys.executable,
                __file__,
                "--child",
                config,
                mode,
                str(calls),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        events = re.search(r"^events:\s*(.+)$", Path(out_file).read_text(), re.MULTILINE)
    collected = re.search(r"Collected\s*:\s*([\d ]+)", result.stderr)
    if collected is None or events is None:
        raise RuntimeError(f"no callgrind count for {config} {mode}:\n{result.stderr[-2000:]}")
    values = collected.group(1).split()
    return {name: int(value) / calls for name, value in zip(events.group(1).split(), values, strict=True)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=30, help="counted calls per configuration (default 30)")
    parser.add_argument("--simulate-caches", action="store_true",
                        help="also simulate caches and branch prediction (slower)")
    parser.add_argument("--child", nargs=3, metavar=("CONFIG", "MODE", "CALLS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    print("Instructions per openai call (callgrind), added over an uninstrumented call:")
    for mode in MODES:
        per_call = {config: count(config, mode, args.calls, args.simulate_caches) for config in CONFIGS}
        for event, name in SIMULATED.items():
            if event not in per_call["bare"]:
                continue
            bare = per_call["bare"][event]
            theirs, ours = per_call["openai-v2"][event] - bare, per_call["ours"][event] - bare
            ratio = f"{ours / theirs:5.2f}" if theirs else "  -  "
            label = mode if event == "Ir" else f"  {name}"
            print(
                f"  {label:30s} bare {bare / 1e3:8.2f} K | openai-v2 +{theirs / 1e3:6.2f} K | "
                f"ours +{ours / 1e3:6.2f} K | ratio ours/openai-v2 = {ratio}"
            )


if __name__ == "__main__":
    main()
