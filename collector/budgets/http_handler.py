"""`POST /v1/budget/check` on the collector's OTLP/HTTP port: JSON in, JSON out.

Body: {"run_id", "feature", "agent", "tenant", "estimated_cost_usd", "span_id", "step",
"settle": [{"span_id", "actual_cost_usd", "reservation_id"?, "reserved_usd"?}], "release": [...],
"allowance_usd"}. Only `run_id` is required. A bad body gets 400 and {"error": "..."}.
"""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from typing import Any

from .service import CHECK_SCALAR_FIELDS, BadCheckRequest, BudgetChecker, answer_fields, build_request

__all__ = ["CHECK_PATH", "handle_check"]

logger = logging.getLogger(__name__)

CHECK_PATH = "/v1/budget/check"
MAX_BODY_BYTES = 1 << 20
_FIELDS = {*CHECK_SCALAR_FIELDS, "settle", "release"}
_JSON = {"Content-Type": "application/json"}


def _reply(status: int, payload: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    return status, dict(_JSON), json.dumps(payload).encode()


def handle_check(
    checker: BudgetChecker, body: bytes, content_type: str = "application/json"
) -> tuple[int, dict[str, str], bytes]:
    """Answer one check: (HTTP status, headers, body)."""
    if content_type and content_type.split(";")[0].strip().lower() not in ("application/json", ""):
        return _reply(415, {"error": f"Content-Type must be application/json, got {content_type!r}"})
    if len(body) > MAX_BODY_BYTES:
        return _reply(413, {"error": f"body larger than {MAX_BODY_BYTES} bytes"})
    try:
        # Money stays exact: JSON numbers become Decimal, never binary floats.
        fields = json.loads(body, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as error:
        return _reply(400, {"error": f"body is not valid JSON: {error}"})
    except RecursionError:
        return _reply(400, {"error": "body is not valid JSON: nested too deeply"})
    if not isinstance(fields, dict):
        return _reply(400, {"error": "body must be a JSON object with at least run_id"})
    unknown = sorted(set(fields) - _FIELDS)
    if unknown:
        return _reply(
            400, {"error": f"unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(_FIELDS))}"}
        )
    settle, release = fields.get("settle") or [], fields.get("release") or []
    if not isinstance(settle, list) or not isinstance(release, list):
        return _reply(400, {"error": "settle and release must be lists"})
    try:
        request = build_request(fields, settle, release)
    except BadCheckRequest as error:
        return _reply(400, {"error": str(error)})
    try:
        answer = checker.check(request)
    except Exception:
        logger.exception("budget check failed")
        return _reply(503, {"error": "the budget ledger is unavailable"})
    return _reply(200, answer_fields(answer))
