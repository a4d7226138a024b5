"""Collector ingest benchmark: OTLP/gRPC throughput with the full pipeline and durable ack, against
the bare protobuf parse + minimal attribute walk of the same requests, measured in the same run.

    python bench/collector_ingest.py [--requests 40] [--rounds 3] [--in-flight 4] [--skip-memory]
    python bench/collector_ingest.py --skip-in-process --skip-memory  # the headline numbers only
    python bench/collector_ingest.py --breakdown     # microseconds per span of each part

Headline: the collector runs as its own process, started the way a user starts it
(`python -m collector.main --config <yaml>`, ports read from its "collector.ready" log line), and
this process sends the pre-serialized requests over gRPC, several in flight, each answered after
its durable commit. Two collectors: the core pipeline (waste detection off, no budgets) and the
default install with the waste and budget stages (a global monthly budget and a per-feature
budget with a per-run limit). The baseline (parse + walk) runs in this process; rounds are
interleaved (baseline, core, full, repeat) and each round's ratio uses that round's baseline.
Also printed: the same with the collector inside this process (the client's threads then share
the collector's GIL, which no deployment does). Then, with a collector subprocess: RSS with 100k
runs tracked (target <= 300 MB) and start-to-ready time (target <= 2 s). Absolute numbers vary
with the machine's load; the ratios are the result.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from collector.process import (
    CollectorProcess,
    process_tree,
    tree_cpu_seconds,
    tree_pss_bytes,
    tree_rss_bytes,
)

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
SPANS_PER_REQUEST = 512
MODELS = [("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4-6")]


def _kv(key: str, value: object) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def llm_span(rng: random.Random, trace_id: bytes, parent: bytes, run_id: str, step: int) -> Span:
    """An LLM span with the attribute set of cognocient_otel's instrumentation."""
    provider, model = rng.choice(MODELS)
    start = time.time_ns() - rng.randrange(10**9, 60 * 10**9)
    input_tokens = rng.randrange(500, 20_000)
    output_tokens = rng.randrange(50, 2_000)
    attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": model,
        "gen_ai.response.model": model,
        "gen_ai.response.id": "chatcmpl-" + uuid.UUID(int=rng.getrandbits(128)).hex,
        "gen_ai.response.finish_reasons": "stop",
        "gen_ai.request.max_tokens": 4096,
        "gen_ai.usage.input_tokens": input_tokens,
        "gen_ai.usage.output_tokens": output_tokens,
        "gen_ai.usage.cache_read.input_tokens": input_tokens // 4,
        "server.address": "api.openai.com" if provider == "openai" else "api.anthropic.com",
        "server.port": 443,
        "cognocient.run.id": run_id,
        "cognocient.feature": "document-processor",
        "cognocient.step": step,
        "cognocient.request.fingerprint": f"{rng.getrandbits(64):016x}",
        "cognocient.cost.usd": round(input_tokens * 2.5e-6 + output_tokens * 1e-5, 9),
        "cognocient.cost.source": "price_table",
    }
    return Span(
        trace_id=trace_id, span_id=rng.randbytes(8), parent_span_id=parent, name=f"chat {model}",
        kind=Span.SPAN_KIND_CLIENT, start_time_unix_nano=start,
        end_time_unix_nano=start + rng.randrange(10**8, 5 * 10**9),
        attributes=[_kv(key, value) for key, value in attributes.items()], status=Status(code=1),
    )


def make_requests(count: int, *, runs_per_request: int = 32, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    resource = Resource(attributes=[
        _kv("service.name", "agent-worker"), _kv("service.version", "1.4.2"),
        _kv("telemetry.sdk.language", "python"), _kv("telemetry.sdk.name", "opentelemetry"),
        _kv("telemetry.sdk.version", "1.45.0"), _kv("host.name", "worker-7"),
    ])
    scope = InstrumentationScope(name="cognocient_otel", version="0.1.0")
    bodies = []
    for _ in range(count):
        spans = []
        per_run = SPANS_PER_REQUEST // runs_per_request
        for _run in range(runs_per_request):
            run_id = str(uuid.UUID(int=rng.getrandbits(128)))
            trace_id, root_id = rng.randbytes(16), rng.randbytes(8)
            spans.extend(llm_span(rng, trace_id, root_id, run_id, step + 1) for step in range(per_run))
        request = ExportTraceServiceRequest(resource_spans=[
            ResourceSpans(resource=resource, scope_spans=[ScopeSpans(scope=scope, spans=spans)])])
        bodies.append(request.SerializeToString())
    return bodies


def baseline(bodies: list[bytes]) -> float:
    """Bare protobuf parse plus a minimal walk over every span's attributes."""
    started = time.perf_counter()
    spans = 0
    for body in bodies:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans += 1
                    _ids = (span.trace_id, span.span_id, span.start_time_unix_nano, span.end_time_unix_nano)
                    for kv in span.attributes:
                        value = kv.value
                        getattr(value, value.WhichOneof("value"))
    return spans / (time.perf_counter() - started)


# The default install's budgets as a team would set them: a company-wide monthly cap and a feature
# with its own month and a per-run limit. Limits high enough that no run is blocked: the benchmark
# measures counting spends, the steady state; refusals are the budget check's business.
BUDGETS = [
    {"name": "company", "scope": "global", "monthly_limit_usd": 1_000_000},
    {"name": "document-processor per run", "scope": "feature", "scope_value": "document-processor",
     "monthly_limit_usd": 500_000, "daily_limit_usd": 50_000, "per_run_limit_usd": 25},
]


# Knobs (--grpc-workers, --decode-workers): None keeps the collector's default.
TUNING: dict[str, int | None] = {"grpc_workers": None, "decode_workers": None}


def collector_config(folder: str, *, full: bool, name: str = "bench") -> dict:
    """Port 0 everywhere; `full`: the default install (waste stage on) with `BUDGETS`; else the
    core pipeline only (waste detection off, no budgets)."""
    grpc_receiver: dict = {"endpoint": "127.0.0.1:0"}
    if TUNING["grpc_workers"] is not None:
        grpc_receiver["max_workers"] = int(TUNING["grpc_workers"])
    otlp: dict = {"grpc": grpc_receiver, "http": {"endpoint": "127.0.0.1:0"}}
    if TUNING["decode_workers"] is not None:
        otlp["decode_workers"] = int(TUNING["decode_workers"])
    return {
        "receivers": {"otlp": otlp},
        "prometheus": {"endpoint": "127.0.0.1:0"},
        "store": {"path": str(Path(folder) / f"{name}.db")},
        "log": {"level": "info"},  # the ready line is an info line
        **({"budgets": BUDGETS} if full else {"waste": {"enabled": False}}),
    }


def send_all(call: grpc.UnaryUnaryMultiCallable, bodies: list[bytes], *, in_flight: int) -> float:
    """Send every request with `in_flight` calls outstanding (gRPC futures, no client threads);
    each answer comes after the collector's durable commit. Returns spans/s."""
    started = time.perf_counter()
    pending = iter(bodies)
    waiting = [call.future(body, timeout=120) for body in itertools.islice(pending, in_flight)]
    while waiting:
        waiting.pop(0).result()
        body = next(pending, None)
        if body is not None:
            waiting.append(call.future(body, timeout=120))
    return len(bodies) * SPANS_PER_REQUEST / (time.perf_counter() - started)


def expected_decode_workers() -> int:
    from collector.config import OtlpReceiverConfig
    from collector.decode_pool import workers_for

    setting = TUNING["decode_workers"]
    return workers_for(OtlpReceiverConfig().decode_workers if setting is None else setting)


def _wait(condition: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


class OwnProcessCollector:
    """`python -m collector.main --config <yaml>` in a temporary folder, as a user runs it
    (`collector.process.CollectorProcess` starts it and reads the ports from its ready line)."""

    def __init__(self, folder: str, *, full: bool) -> None:
        name = "full" if full else "core"
        workdir = Path(folder) / name
        workdir.mkdir(exist_ok=True)
        config = collector_config(folder, full=full, name=name)
        self.handle = CollectorProcess.from_config(workdir, config).start()
        self.process = self.handle.process
        if expected_decode_workers():  # its workers start after the ready line
            _wait(lambda: len(self.handle.pids()) >= 3, "the collector's decode workers")
        self.channel = grpc.insecure_channel(self.handle.grpc_endpoint)
        self.call = self.channel.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)

    def metric(self, name: str) -> float:
        """Sum of every series of `name` on the collector's /metrics."""
        import urllib.request

        text = urllib.request.urlopen(self.handle.metrics_url, timeout=10).read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name + "{") or line.startswith(name + " "))

    def cpu_seconds(self) -> float:
        """CPU time (user + system, every thread) the collector and its decode workers have used."""
        return tree_cpu_seconds(self.handle.pids())

    def stop(self) -> None:
        self.channel.close()
        if self.handle.stop(grace_seconds=60) != 0:
            raise RuntimeError(f"collector exited with {self.process.returncode}:\n{self.handle.log_tail()}")


class InProcessCollector:
    """The collector inside this process (the old headline): same config, same client."""

    def __init__(self, folder: str, *, full: bool) -> None:
        from prometheus_client import CollectorRegistry

        from collector.app import Collector
        from collector.config import parse_config

        raw = collector_config(folder, full=full, name="inproc")
        config = parse_config({**raw, "log": {"level": "warning"}})
        self.collector = Collector(config, registry=CollectorRegistry()).start()
        if expected_decode_workers():
            _wait(self.collector.decode_pool.worker_pids, "the collector's decode workers")
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.collector.grpc_port}")
        self.call = self.channel.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)

    def cpu_seconds(self) -> float:
        # the whole benchmark process (collector and client), and the collector's decode workers
        return time.process_time() + tree_cpu_seconds(sorted(self.collector.decode_pool.worker_pids()))

    def metric(self, name: str) -> float:
        assert name == "cognocient_collector_spans_accepted_total"
        return self.collector.stats.spans_accepted.get(("grpc",))

    def stop(self) -> None:
        self.channel.close()
        self.collector.stop()


def measure(
    rounds: list[list[bytes]], *, in_flight: int, in_process: bool
) -> list[dict[str, float]]:
    """Per round: the baseline, then the core collector, then the full one, each on the round's
    fresh requests (new span ids: nothing is a duplicate). Checks every span was accepted."""
    kind = InProcessCollector if in_process else OwnProcessCollector
    results = []
    with tempfile.TemporaryDirectory() as folder:
        core, full = Path(folder, "core"), Path(folder, "full")
        core.mkdir()
        full.mkdir()
        collectors = {"core": kind(str(core), full=False), "full": kind(str(full), full=True)}
        try:
            warm_up = make_requests(2, seed=99)
            for each in collectors.values():
                send_all(each.call, warm_up, in_flight=2)  # connection, prices, SQLite pages
            spans = len(rounds[0]) * SPANS_PER_REQUEST
            for bodies in rounds:
                cpu = time.process_time()
                result = {"baseline": baseline(bodies)}
                result["baseline_cpu_us"] = (time.process_time() - cpu) / spans * 1e6
                for name, each in collectors.items():
                    cpu = each.cpu_seconds()
                    result[name] = send_all(each.call, bodies, in_flight=in_flight)
                    result[f"{name}_cpu_us"] = (each.cpu_seconds() - cpu) / spans * 1e6
                results.append(result)
            expected = (len(warm_up) + sum(map(len, rounds))) * SPANS_PER_REQUEST
            for name, each in collectors.items():
                accepted = each.metric("cognocient_collector_spans_accepted_total")
                if accepted != expected:
                    raise RuntimeError(f"{name} collector accepted {accepted} spans, expected {expected}")
        finally:
            for each in collectors.values():
                each.stop()
    return results


def _summary(results: list[dict[str, float]], name: str) -> str:
    ratios = [result[name] / result["baseline"] for result in results]
    cpu = [result[f"{name}_cpu_us"] for result in results]
    # CPU per span is far less disturbed by other load than wall time; the collector process uses
    # about one core (one GIL), so baseline CPU / collector CPU is what the wall ratio tends to
    # on a quiet machine.
    cpu_ratio = statistics.median(result["baseline_cpu_us"] / result[f"{name}_cpu_us"] for result in results)
    return (f"{statistics.median(result[name] for result in results):,.0f} spans/s, "
            f"ratio median {statistics.median(ratios):.2f}, best {max(ratios):.2f} "
            f"(rounds: {' '.join(f'{ratio:.2f}' for ratio in ratios)}); "
            f"CPU {statistics.median(cpu):.1f} us/span (rounds: {' '.join(f'{each:.1f}' for each in cpu)}), "
            f"CPU ratio {cpu_ratio:.2f}")


def breakdown(bodies: list[bytes], *, in_flight: int) -> dict[str, float]:
    """Microseconds per span of each part: the parse and decode on their own (fresh parses, best of
    3), then one core collector pass over gRPC, read back from its own stage and commit histograms."""
    from prometheus_client import CollectorRegistry

    from collector.app import Collector
    from collector.config import parse_config
    from collector.decode import decode_request, parse_protobuf

    spans = len(bodies) * SPANS_PER_REQUEST
    parts: dict[str, float] = {}
    parse_best = decode_best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        requests = [parse_protobuf(body) for body in bodies]
        parsed = time.perf_counter()
        for request in requests:
            decode_request(request, transport="grpc")
        decode_best = min(decode_best, time.perf_counter() - parsed)
        parse_best = min(parse_best, parsed - started)
    parts["parse (upb, lean view)"] = parse_best / spans * 1e6
    parts["decode (records)"] = decode_best / spans * 1e6
    with tempfile.TemporaryDirectory() as folder:
        config = parse_config({
            "receivers": {"otlp": {"grpc": {"endpoint": "127.0.0.1:0"}, "http": {"endpoint": "127.0.0.1:0"}}},
            "prometheus": {"endpoint": "127.0.0.1:0"},
            "store": {"path": str(Path(folder) / "breakdown.db")},
            "log": {"level": "warning"},
        })
        collector = Collector(config, registry=CollectorRegistry(), plugins=[]).start()
        try:
            with grpc.insecure_channel(f"127.0.0.1:{collector.grpc_port}") as channel:
                call = channel.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)
                pending = list(bodies)
                lock = threading.Lock()

                def client() -> None:
                    while True:
                        with lock:
                            if not pending:
                                return
                            body = pending.pop()
                        call(body, timeout=60)

                threads = [threading.Thread(target=client) for _ in range(in_flight)]
                started = time.perf_counter()
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                elapsed = time.perf_counter() - started
                parts["wall clock, everything (1 / throughput)"] = elapsed / spans * 1e6
            for labels, _buckets, seconds in collector.stats.stages.seconds.snapshot():
                parts[f"stage {labels[0]}"] = seconds / spans * 1e6
            for _labels, _buckets, seconds in collector.stats.store_commit.snapshot():
                parts["store commit (runs upsert, COMMIT)"] = seconds / spans * 1e6
        finally:
            collector.stop()
    return parts


def _memory_mb(pid: int) -> dict[str, float]:
    """The collector process's RSS; with its decode workers (their forkserver and resource
    tracker too), the RSS summed and the PSS (shared pages counted once)."""
    tree = process_tree(pid)
    return {"rss": tree_rss_bytes([pid]) / 2**20, "tree_rss": tree_rss_bytes(tree) / 2**20,
            "tree_pss": tree_pss_bytes(tree) / 2**20}


def _serve(config_path: str, plugins: bool) -> None:
    """The collector as `cognocient-collector` runs it, optionally without the installed plugins."""
    import signal

    from collector.app import Collector
    from collector.config import load_config
    from collector.logs import setup_logging
    from collector.main import tune_garbage_collector

    setup_logging()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    collector = Collector(load_config(config_path), plugins=None if plugins else []).start()
    tune_garbage_collector()
    stop.wait()
    collector.stop()


def _start_process(folder: str, plugins: bool) -> tuple[subprocess.Popen, dict, float]:
    config = Path(folder) / "collector.yaml"
    otlp: dict = {"grpc": {"endpoint": "127.0.0.1:0"}, "http": {"endpoint": "127.0.0.1:0"}}
    if TUNING["decode_workers"] is not None:
        otlp["decode_workers"] = TUNING["decode_workers"]
    config.write_text(json.dumps({
        "receivers": {"otlp": otlp},
        "prometheus": {"endpoint": "127.0.0.1:0"},
        "store": {"path": str(Path(folder) / "rss.db")},
    }))
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(config), *([] if plugins else ["--no-plugins"])],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )
    assert process.stderr is not None
    for line in process.stderr:
        entry = json.loads(line)
        if entry.get("event") == "collector.ready":
            ready = time.perf_counter() - started
            if expected_decode_workers():  # they start after the ready line
                _wait(lambda: len(process_tree(process.pid)) >= 3, "the collector's decode workers")
            threading.Thread(target=process.stderr.read, daemon=True).start()  # keep draining its log
            return process, entry, ready
    raise RuntimeError("collector exited before ready")


def memory_and_startup(runs: int, *, plugins: bool) -> dict[str, float]:
    requests = -(-runs // SPANS_PER_REQUEST)
    bodies = make_requests(requests, runs_per_request=SPANS_PER_REQUEST, seed=2)  # one span per run
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        process, ready, wall = _start_process(folder, plugins)
        results["ready_empty_store_s"] = wall
        results["ready_empty_store_logged_s"] = ready["startup_seconds"]
        results.update({f"{name}_idle_mb": value for name, value in _memory_mb(process.pid).items()})
        with grpc.insecure_channel(f"127.0.0.1:{ready['grpc_port']}") as channel:
            call = channel.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)
            for body in bodies:
                call(body, timeout=60)
        results["runs_tracked"] = requests * SPANS_PER_REQUEST
        results.update({f"{name}_with_runs_mb": value for name, value in _memory_mb(process.pid).items()})
        process.terminate()
        process.wait(30)
        process, ready, wall = _start_process(folder, plugins)  # restart: the active runs are loaded back
        results["ready_with_runs_s"] = wall
        results["ready_with_runs_logged_s"] = ready["startup_seconds"]
        results["runs_loaded"] = ready["runs_loaded"]
        results.update({f"{name}_after_reload_mb": value for name, value in _memory_mb(process.pid).items()})
        process.terminate()
        process.wait(30)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=40, help="requests of 512 spans (default 40)")
    parser.add_argument("--in-flight", type=int, default=4, help="concurrent gRPC calls (default 4)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds; median and best ratio printed (default 3)")
    parser.add_argument("--runs-for-rss", type=int, default=100_000)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-in-process", action="store_true",
                        help="only the separate-process collector (the headline)")
    parser.add_argument("--breakdown", action="store_true",
                        help="only print microseconds per span of each part (parse, decode, stages, commit)")
    parser.add_argument("--serve", metavar="CONFIG", help=argparse.SUPPRESS)
    parser.add_argument("--no-plugins", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--grpc-workers", type=int, help="receivers.otlp.grpc.max_workers (experiments)")
    parser.add_argument("--decode-workers", type=int,
                        help="receivers.otlp.decode_workers (default: the collector's default, auto)")
    args = parser.parse_args()
    TUNING.update(grpc_workers=args.grpc_workers, decode_workers=args.decode_workers)
    if args.serve:
        _serve(args.serve, plugins=not args.no_plugins)
        return
    if args.breakdown:
        bodies = make_requests(args.requests)
        base = max(baseline(bodies) for _ in range(3))
        print(f"baseline (parse + attribute walk): {1e6 / base:.2f} us/span")
        for part, micros in breakdown(bodies, in_flight=args.in_flight).items():
            print(f"{part}: {micros:.2f} us/span")
        return
    # Fresh requests per round (new span ids), made before anything is timed.
    rounds = [make_requests(args.requests, seed=1000 + number) for number in range(args.rounds)]
    modes = [("collector in its own process (as deployed)", False)]
    if not args.skip_in_process:
        modes.append(("collector inside the benchmark process (client shares its GIL)", True))
    print(f"{args.requests} requests of {SPANS_PER_REQUEST} spans per round, {args.in_flight} in flight, "
          f"{args.rounds} rounds; ratio = collector / baseline of the same round (target >= 0.5)")
    for title, in_process in modes:
        results = measure(rounds, in_flight=args.in_flight, in_process=in_process)
        print(f"{title}:")
        print(f"  baseline (parse + attribute walk): "
              f"{statistics.median(result['baseline'] for result in results):,.0f} spans/s; CPU "
              f"{statistics.median(result['baseline_cpu_us'] for result in results):.1f} us/span")
        print(f"  core pipeline (decode, dedup, cost, rollup, commit): {_summary(results, 'core')}")
        print(f"  default install, waste + budget stages, budgets configured: {_summary(results, 'full')}")
        sys.stdout.flush()
    for plugins in ([] if args.skip_memory else [False, True]):
        results = memory_and_startup(args.runs_for_rss, plugins=plugins)
        print("with the installed plugins:" if plugins else "core collector (no plugins):")
        print(f"  RSS of the collector process idle: {results['rss_idle_mb']:.0f} MB; "
              f"with {results['runs_tracked']:,.0f} runs tracked: "
              f"{results['rss_with_runs_mb']:.0f} MB (target <= 300 MB); after a restart that reloads "
              f"{results['runs_loaded']:,.0f} runs: {results['rss_after_reload_mb']:.0f} MB")
        if results["tree_rss_with_runs_mb"] > results["rss_with_runs_mb"]:
            print(f"  with its decode workers: RSS summed {results['tree_rss_with_runs_mb']:.0f} MB, "
                  f"PSS {results['tree_pss_with_runs_mb']:.0f} MB with the runs tracked "
                  f"(idle: {results['tree_rss_idle_mb']:.0f} / {results['tree_pss_idle_mb']:.0f} MB)")
        print(f"  start to ready (process spawn to ready log line): empty store "
              f"{results['ready_empty_store_s']:.2f} s "
              f"(collector.start {results['ready_empty_store_logged_s']:.2f} s); "
              f"with the runs in the store {results['ready_with_runs_s']:.2f} s "
              f"(collector.start {results['ready_with_runs_logged_s']:.2f} s) (target <= 2 s)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
