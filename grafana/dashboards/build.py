"""Writes the dashboards' JSON next to this file, or checks that the committed JSON is current.

    python -m grafana.dashboards.build           # regenerate grafana/dashboards/*.json
    python -m grafana.dashboards.build --check   # exit 1 if a committed file differs

Run from the repository root. The JSON is what Grafana's provisioning loads, so it is committed;
tests/grafana fails when it differs from what this code generates.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from grafana_foundation_sdk.builders.dashboard import Dashboard
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from grafana.dashboards import budgets, collector_health, run_cost

DASHBOARD_DIR = Path(__file__).resolve().parent

# File name -> the function that builds that dashboard.
DASHBOARDS: dict[str, Callable[[], Dashboard]] = {
    "agent-run-cost.json": run_cost.build,
    "budgets.json": budgets.build,
    "collector-health.json": collector_health.build,
}


def render(build: Callable[[], Dashboard]) -> str:
    """The dashboard as committed: sorted keys and a trailing newline, so diffs stay readable."""
    return json.dumps(build().build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def render_all() -> dict[str, str]:
    return {name: render(build) for name, build in DASHBOARDS.items()}


def stale_files(directory: Path = DASHBOARD_DIR) -> list[str]:
    """Names of dashboard files that are missing or differ from what the code generates."""
    return [
        name for name, text in render_all().items()
        if not (directory / name).is_file() or (directory / name).read_text(encoding="utf-8") != text
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grafana.dashboards.build", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if a committed dashboard differs from the code")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for name in stale:
            print(f"{name} is out of date: run python -m grafana.dashboards.build", file=sys.stderr)
        return 1 if stale else 0
    for name, text in render_all().items():
        (DASHBOARD_DIR / name).write_text(text, encoding="utf-8")
        print(f"wrote {DASHBOARD_DIR.name}/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
