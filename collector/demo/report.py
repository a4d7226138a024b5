"""The runs table the demo prints at the end, read from the collector's `GET /v1/runs`."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterable


class RunsApiError(RuntimeError):
    """The collector's runs API did not answer, or answered something that is not a run list."""


def fetch_runs(http_url: str, *, limit: int = 100) -> list[dict]:
    url = f"{http_url.rstrip('/')}/v1/runs?order=last_call&limit={limit}"
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            body = json.load(answer)
    except (OSError, urllib.error.URLError, ValueError) as error:
        raise RunsApiError(f"GET {url} failed: {error}") from error
    if not isinstance(body, dict) or not isinstance(body.get("runs"), list):
        raise RunsApiError(f"GET {url} did not return {{'runs': [...]}}: {str(body)[:200]}")
    return body["runs"]


def wait_for_runs(http_url: str, run_ids: Iterable[str], *, timeout_seconds: float = 20.0) -> list[dict]:
    """The collector's view of `run_ids`, oldest first, once all have their final status (or at timeout).

    Spans reach the collector in batches; a run is complete when it is no longer `active`.
    """
    wanted = set(run_ids)
    deadline = time.monotonic() + timeout_seconds
    while True:
        runs = [run for run in fetch_runs(http_url, limit=1000) if run["run_id"] in wanted]
        settled = {run["run_id"] for run in runs if run["status"] != "active"}
        if settled >= wanted or time.monotonic() > deadline:
            return sorted(runs, key=lambda run: run.get("first_call") or "")
        time.sleep(0.25)


def _blocked_by(value: object) -> str:
    if isinstance(value, dict):  # {"budget": ..., "step": ...}
        return str(value.get("budget") or "-")
    return str(value or "-")


def format_table(runs: list[dict]) -> str:
    header = ("run id", "feature", "agent", "status", "steps", "cost USD", "waste flags", "blocked by")
    rows = [
        (
            run["run_id"],
            run.get("feature") or "",
            run.get("agent") or "",
            run["status"],
            str(run["steps"]),
            f"{run['cost_usd']:.4f}",
            ",".join(sorted({flag.get("kind", "?") for flag in run.get("waste_flags") or []})) or "-",
            _blocked_by(run.get("blocked_by")),
        )
        for run in runs
    ]
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=False)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
             for row in (header, *rows)]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
