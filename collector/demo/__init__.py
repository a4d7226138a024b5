"""`cognocient-demo`: instrumented agents fill a collector, Prometheus and the Grafana dashboards.

    cognocient-demo                      # starts a collector (metrics on 127.0.0.1:9464) and runs the agents
    cognocient-demo --keep-running       # ... and keeps sending traffic until Ctrl-C, for Grafana
    cognocient-demo --collector-endpoint http://127.0.0.1:4317   # use a running collector

It starts the local LLM server of `cognocient_otel.testing` (OpenAI API, no network, no key),
runs agents through the real `openai` SDK instrumented by `cognocient_otel`, and prints the runs
as the collector's `GET /v1/runs` reports them. docs/demo.md walks through it.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

from collector.demo.local_collector import CollectorStartError, LocalCollector, is_healthy
from collector.demo.report import RunsApiError, format_table, wait_for_runs

__all__ = ["main"]


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cognocient-demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--collector-endpoint", metavar="URL",
                        help="OTLP/gRPC URL of a running collector, e.g. http://127.0.0.1:4317 "
                        "(default: start one with the demo's budgets)")
    parser.add_argument("--collector-http", metavar="URL",
                        help="the collector's HTTP URL for GET /v1/runs "
                        "(default: the endpoint's host, port 4318)")
    parser.add_argument("--metrics-port", type=int, default=9464,
                        help="/metrics port of the collector the demo starts (default 9464, which "
                        "grafana/prometheus/prometheus.yml scrapes; 0 picks a free port)")
    parser.add_argument("--rounds", type=int, default=6, help="rounds of normal runs (default 6)")
    parser.add_argument("--pause", type=float, default=2.0,
                        help="seconds between rounds, so Prometheus sees rates (default 2)")
    parser.add_argument("--quick", action="store_true", help="2 rounds, no pause: for tests")
    parser.add_argument("--keep-running", action="store_true",
                        help="after the table, keep sending a round every --pause seconds until Ctrl-C")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.pause < 0:
        parser.error("--pause must be >= 0")
    if not 0 <= args.metrics_port <= 65535:
        parser.error("--metrics-port must be from 0 to 65535")
    if args.collector_endpoint and "://" not in args.collector_endpoint:
        args.collector_endpoint = f"http://{args.collector_endpoint}"
        if urlsplit(args.collector_endpoint).port is None:
            args.collector_endpoint += ":4317"
    if args.quick:
        args.rounds, args.pause = 2, 0.0
    return args


def _default_http_url(otlp_endpoint: str) -> str:
    host = urlsplit(otlp_endpoint).hostname or "127.0.0.1"
    return f"http://{host}:4318"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        import openai
    except ImportError:
        print("cognocient-demo: the demo drives the openai SDK: pip install 'cognocient-otel[demo]'",
              file=sys.stderr)
        return 2

    collector: LocalCollector | None = None
    if args.collector_endpoint:
        otlp_endpoint = args.collector_endpoint
        http_url = args.collector_http or _default_http_url(otlp_endpoint)
        if not is_healthy(http_url):
            print(f"cognocient-demo: no collector answers {http_url}/healthz: start one "
                  "(cognocient-collector), pass its HTTP URL with --collector-http, or omit "
                  "--collector-endpoint to let the demo start its own", file=sys.stderr)
            return 1
    else:
        try:
            collector = LocalCollector(metrics_port=args.metrics_port or None).start()
        except (CollectorStartError, OSError) as error:
            print(f"cognocient-demo: cannot start a collector: {error}", file=sys.stderr)
            return 1
        otlp_endpoint, http_url = collector.otlp_endpoint, collector.http_url
        print(f"collector: OTLP {otlp_endpoint}, runs API {http_url}/v1/runs, "
              f"metrics {collector.metrics_url}", flush=True)
    try:
        return _drive(openai, args, otlp_endpoint=otlp_endpoint, http_url=http_url)
    finally:
        if collector is not None:
            collector.stop()


def _drive(openai_module: object, args: argparse.Namespace, *, otlp_endpoint: str, http_url: str) -> int:
    import cognocient_otel
    from cognocient_otel.remote_budget import configure_budget_client
    from cognocient_otel.testing.llm_server import LLMServer
    from collector.demo import agents

    server = LLMServer().start()
    # Our own budget guard instead of configure()'s default one: allowance_calls=0 makes every
    # call ask the collector, so the per-run limit stops the runaway run at the exact call.
    guard = configure_budget_client(otlp_endpoint, allowance_calls=0, timeout_seconds=2.0)
    server_host = urlsplit(server.base_url).netloc
    provider = cognocient_otel.configure(otlp_endpoint, service_name="cognocient-demo",
                                         providers={server_host: "openai"}, guards=[guard],
                                         budget_failure_policy=None)
    cognocient_otel.instrument()
    client = openai_module.OpenAI(base_url=f"{server.base_url}/v1", api_key="demo-key", max_retries=0)
    try:
        outcomes = []
        for index in range(args.rounds):
            outcomes += agents.normal_round(client, round_index=index)
            if index == args.rounds // 2:
                outcomes += agents.incident_round(client)
            provider.force_flush()
            if index < args.rounds - 1:
                time.sleep(args.pause)
        provider.force_flush()
        try:
            runs = wait_for_runs(http_url, [outcome.run_id for outcome in outcomes])
        except RunsApiError as error:
            print(f"cognocient-demo: {error}", file=sys.stderr)
            return 1
        print(format_table(runs), flush=True)
        unblocked = [o for o in outcomes if o.note.startswith("not blocked")]
        if unblocked:
            print(f"cognocient-demo: the runaway run was {unblocked[0].note}", file=sys.stderr)
            return 1
        if args.keep_running:
            _keep_running(client, provider, args.pause or 2.0)
        return 0
    finally:
        cognocient_otel.uninstrument()
        guard.close()
        provider.shutdown()
        server.stop()


def _keep_running(client: object, provider: object, pause: float) -> None:
    from collector.demo import agents

    print("sending a round of runs every few seconds; Ctrl-C to stop", flush=True)
    index = 0
    try:
        while True:
            index += 1
            agents.normal_round(client, round_index=index)
            if index % 10 == 0:
                agents.incident_round(client)
            provider.force_flush()  # type: ignore[attr-defined]
            time.sleep(pause)
    except KeyboardInterrupt:
        print("stopped", flush=True)
