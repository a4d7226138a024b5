"""The runs API on the HTTP port: `GET /v1/runs`, `GET /v1/runs/{run_id}`, `GET /healthz`.

Reads go to the SQLite store through a read-only connection per thread (WAL lets them run beside
the writer); a run is in the store the moment its batch was acknowledged, so the API never shows
less than what clients were told is committed. The JSON shape is documented in docs/collector.md.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from collector.http_server import HttpRequest, HttpResponse
from collector.model import DEFAULT_TENANT
from collector.rollup import ROW_COLUMNS, TOKEN_TYPES, RunRollup

STATUSES = ("active", "finished", "blocked", "expired")
ORDERS = {"cost": "cost_float DESC", "last_call": "last_call_ns DESC", "last_seen": "last_seen DESC"}
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def _timestamp(unix_ns: int | None) -> str | None:
    if unix_ns is None:
        return None
    moment = datetime.fromtimestamp(unix_ns / 1e9, tz=timezone.utc)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def run_json(run: RunRollup) -> dict[str, Any]:
    """A run's rollup as the API returns it (money as JSON numbers, plus the exact decimal text)."""
    tokens = dict(zip(TOKEN_TYPES, (run.input_tokens, run.output_tokens, run.cache_read_tokens,
                                    run.cache_creation_tokens, run.reasoning_tokens), strict=True))
    return {
        "run_id": run.run_id,
        "tenant": run.tenant,
        "feature": run.feature,
        "agent": run.agent,
        "status": run.status,
        "cost_usd": float(run.cost_usd),
        "cost_usd_exact": str(run.cost_usd),
        "steps": run.steps,
        "tokens": tokens,
        "models": {
            name: {
                "provider": totals.provider,
                "calls": totals.calls,
                "cost_usd": float(totals.cost_usd),
                "input_tokens": totals.input_tokens,
                "output_tokens": totals.output_tokens,
            }
            for name, totals in run.models.items()
        },
        "unpriced_calls": run.unpriced_calls,
        "first_call": _timestamp(run.first_call_ns),
        "last_call": _timestamp(run.last_call_ns),
        "duration_seconds": run.duration_seconds,
        "waste_flags": [
            {**flag, "wasted_cost_usd": float(flag["wasted_cost_usd"])} if "wasted_cost_usd" in flag else flag
            for flag in run.waste_flags
        ],
        "blocked_by": run.blocked_by,
    }


class RunsApi:
    def __init__(self, store_path: str, *, ready: Callable[[], bool]) -> None:
        self._path = store_path
        self._local = threading.local()
        self._ready = ready

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._path, check_same_thread=True)
            conn.execute("PRAGMA query_only=1")
            conn.execute("PRAGMA busy_timeout=5000")
            self._local.conn = conn
        return conn

    def healthz(self, request: HttpRequest) -> HttpResponse:
        if self._ready():
            return HttpResponse.json(200, {"status": "ok"})
        return HttpResponse.json(503, {"status": "stopping"})

    def get_run(self, request: HttpRequest) -> HttpResponse:
        run_id = request.path_params["run_id"]
        tenant = request.query_value("tenant") or DEFAULT_TENANT
        row = self._conn().execute(
            f"SELECT {', '.join(ROW_COLUMNS)} FROM runs WHERE tenant = ? AND run_id = ?", (tenant, run_id)
        ).fetchone()
        if row is None:
            return HttpResponse.error(404, f"no run {run_id!r} (tenant {tenant!r})")
        return HttpResponse.json(200, run_json(RunRollup.from_row(row)))

    def list_runs(self, request: HttpRequest) -> HttpResponse:
        where, params = ["tenant = ?"], [request.query_value("tenant") or DEFAULT_TENANT]
        for name in ("feature", "agent"):
            value = request.query_value(name)
            if value is not None:
                where.append(f"{name} = ?")
                params.append(value)
        status = request.query_value("status")
        if status is not None:
            if status not in STATUSES:
                return HttpResponse.error(400, f"status must be one of {', '.join(STATUSES)}")
            where.append("status = ?")
            params.append(status)
        flag = request.query_value("flag")
        if flag is not None:
            if not flag or "," in flag:
                return HttpResponse.error(400, "flag must be one waste flag kind, e.g. loop")
            where.append("flag_kinds LIKE ?")
            params.append(f"%,{flag},%")
        order = request.query_value("order") or "last_call"
        if order not in ORDERS:
            return HttpResponse.error(400, f"order must be one of {', '.join(ORDERS)}")
        limit_text = request.query_value("limit") or str(DEFAULT_LIMIT)
        # ASCII digits only: str.isdigit() also takes "²" and other scripts' digits, which int()
        # refuses or reads as something the client did not write.
        if not (limit_text.isascii() and limit_text.isdigit() and len(limit_text) <= 9) \
                or not 1 <= int(limit_text) <= MAX_LIMIT:
            return HttpResponse.error(400, f"limit must be a whole number from 1 to {MAX_LIMIT}")
        rows = self._conn().execute(
            f"SELECT {', '.join(ROW_COLUMNS)} FROM runs WHERE {' AND '.join(where)} "
            f"ORDER BY {ORDERS[order]} LIMIT ?",
            (*params, int(limit_text)),
        ).fetchall()
        runs = [run_json(RunRollup.from_row(row)) for row in rows]
        return HttpResponse.json(200, {"runs": runs, "count": len(runs)})
