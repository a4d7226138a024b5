"""How much the recording rules of grafana/prometheus/rules.yml save the dashboards.

    python bench/grafana_recording_rules.py [--features 10] [--agents 3] [--replicas 3] [--repeat 15]

Backfills an hour of synthetic collector metrics (per-run cost histograms and spend counters of
every feature x agent x model, on several collector replicas, 15 s apart) into a fresh
Prometheus with `promtool tsdb create-blocks-from openmetrics`, backfills the recording rules over
the same hour with `promtool tsdb create-blocks-from rules`, then times the dashboard's heavy
panel queries (a one-hour range query at a 15 s step, as Grafana sends them) on the raw series
and on the recorded ones. Prints the median time of each and the ratio raw / recorded, measured
in the same run (absolute times on a shared machine are noise, ratios less so).
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "grafana" / "prometheus" / "rules.yml"
STEP_SECONDS = 15
HOUR = 3600
COST_BUCKETS = ("0.001", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0",
                "10.0", "25.0", "50.0", "+Inf")
MODELS = ("gpt-4o", "gpt-4o-mini", "claude-sonnet-4")

# (panel, raw query, query on the recorded series): what Grafana evaluates at every step.
QUERIES = [
    ("run cost p95 by feature",
     "histogram_quantile(0.95, sum by (le, feature) (rate(cognocient_run_cost_usd_bucket[5m])))",
     "histogram_quantile(0.95, sum by (le, feature) (feature_agent:cognocient_run_cost_usd_bucket:rate5m))"),
    ("spend rate by feature",
     "sum by (feature) (rate(cognocient_llm_cost_usd_total[5m])) * 3600",
     "sum by (feature) (feature_agent_provider_model:cognocient_llm_cost_usd:rate5m) * 3600"),
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_openmetrics(path: Path, *, start: int, features: int, agents: int, replicas: int) -> int:
    """Counters that grow a little every step; returns the number of series written."""
    series = 0
    with path.open("w", encoding="utf-8") as out:
        out.write("# TYPE cognocient_run_cost_usd histogram\n")
        for f in range(features):
            for a in range(agents):
                for r in range(replicas):
                    labels = f'feature="f{f}",agent="a{a}",instance="c{r}:9464",job="cognocient-collector"'
                    for index, bound in enumerate(COST_BUCKETS):
                        series += 1
                        for step in range(HOUR // STEP_SECONDS):
                            count = step * (1 + index) // 3
                            out.write(f'cognocient_run_cost_usd_bucket{{{labels},le="{bound}"}} '
                                      f"{count} {start + step * STEP_SECONDS}\n")
        out.write("# TYPE cognocient_llm_cost_usd counter\n")
        for f in range(features):
            for a in range(agents):
                for model in MODELS:
                    for r in range(replicas):
                        labels = (f'feature="f{f}",agent="a{a}",provider="openai",model="{model}",'
                                  f'instance="c{r}:9464",job="cognocient-collector"')
                        series += 1
                        for step in range(HOUR // STEP_SECONDS):
                            out.write(f"cognocient_llm_cost_usd_total{{{labels}}} {step * 0.01:.2f} "
                                      f"{start + step * STEP_SECONDS}\n")
        out.write("# EOF\n")
    return series


def recording_rules_only(target: Path) -> Path:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    groups = [{"name": group["name"], "rules": [rule for rule in group["rules"] if "record" in rule]}
              for group in document["groups"]]
    target.write_text(yaml.safe_dump({"groups": [g for g in groups if g["rules"]]}), encoding="utf-8")
    return target


class Prometheus:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (workdir / "prometheus.yml").write_text("global: {scrape_interval: 15s}\n", encoding="utf-8")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["prometheus", f"--config.file={self.workdir / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.workdir / 'data'}", "--storage.tsdb.retention.time=30d",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=error"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("prometheus did not become ready")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None

    def query_range(self, expr: str, *, start: int, end: int) -> tuple[float, int]:
        params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": STEP_SECONDS})
        began = time.perf_counter()
        with urllib.request.urlopen(f"{self.url}/api/v1/query_range?{params}", timeout=60) as answer:
            body = json.load(answer)
        elapsed = time.perf_counter() - began
        if body["status"] != "success":
            raise RuntimeError(f"{expr}: {body}")
        return elapsed, len(body["data"]["result"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=int, default=10)
    parser.add_argument("--agents", type=int, default=3)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    if not shutil.which("prometheus") or not shutil.which("promtool"):
        raise SystemExit("needs Debian's prometheus package (prometheus and promtool)")

    with tempfile.TemporaryDirectory(prefix="bench-rules-") as tmp:
        workdir = Path(tmp)
        # Whole 2-hour block boundaries keep promtool's backfill to one block per source.
        end = int(time.time()) // 7200 * 7200 - 60
        start = end - HOUR
        metrics = workdir / "metrics.om"
        series = write_openmetrics(metrics, start=start, features=args.features, agents=args.agents,
                                   replicas=args.replicas)
        subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(metrics),
                        str(workdir / "data")], check=True, capture_output=True)
        prometheus = Prometheus(workdir)
        prometheus.start()
        try:
            subprocess.run(["promtool", "tsdb", "create-blocks-from", "rules", f"--start={start}",
                            f"--end={end}", f"--url={prometheus.url}", f"--output-dir={workdir / 'rules'}",
                            "--eval-interval=15s", str(recording_rules_only(workdir / "recording.yml"))],
                           check=True, capture_output=True)
        finally:
            prometheus.stop()
        for block in (workdir / "rules").iterdir():
            shutil.move(str(block), workdir / "data" / block.name)
        prometheus.start()
        try:
            print(f"{series} raw series, one hour at {STEP_SECONDS} s; range queries over that hour, "
                  f"median of {args.repeat}")
            print(f"{'panel':26} {'raw ms':>8} {'recorded ms':>12} {'raw/recorded':>13}")
            for panel, raw, recorded in QUERIES:
                query_start, query_end = start + 600, end
                raw_times, recorded_times = [], []
                for _ in range(args.repeat):  # interleaved, so drift hits both alike
                    window = {"start": query_start, "end": query_end}
                    elapsed, raw_series = prometheus.query_range(raw, **window)
                    raw_times.append(elapsed)
                    elapsed, recorded_series = prometheus.query_range(recorded, **window)
                    recorded_times.append(elapsed)
                if raw_series != recorded_series or raw_series == 0:
                    raise RuntimeError(f"{panel}: {raw_series} raw vs {recorded_series} recorded series")
                raw_ms = statistics.median(raw_times) * 1000
                recorded_ms = statistics.median(recorded_times) * 1000
                print(f"{panel:26} {raw_ms:8.1f} {recorded_ms:12.1f} {raw_ms / recorded_ms:12.1f}x")
        finally:
            prometheus.stop()


if __name__ == "__main__":
    main()
