"""Our own failures are logged once per place and never raised into the application's call."""

from __future__ import annotations

import logging

__all__ = ["log_failure_once"]

logger = logging.getLogger("cognocient_otel")
_logged_failures: set[str] = set()


def log_failure_once(where: str, exc: BaseException) -> None:
    """Our own bugs are logged once per place, never raised into the application's call."""
    if where not in _logged_failures:
        _logged_failures.add(where)
        logger.warning(
            "cognocient_otel: %s failed (%s: %s); the call goes on untraced there",
            where,
            type(exc).__name__,
            exc,
            exc_info=exc,
        )
