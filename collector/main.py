"""`cognocient-collector [--config FILE] [--version]`.

Exit codes: 0 after a clean stop (SIGTERM or SIGINT drain), 2 for a bad configuration (the
message names the field), 1 when the collector cannot start (port taken, store unusable).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from collector import __version__
from collector.config import ConfigError, load_config
from collector.logs import setup_logging

logger = logging.getLogger("collector")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cognocient-collector",
        description="Receives OTLP traces, rolls LLM cost up per agent run, "
        "serves Prometheus metrics and a runs API.",
    )
    parser.add_argument("--config", metavar="FILE", help="YAML configuration (default: embedded defaults)")
    parser.add_argument("--version", action="version", version=f"cognocient-collector {__version__}")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(f"cognocient-collector: {error}", file=sys.stderr)
        return 2
    setup_logging(level=config.log.level, format=config.log.format)

    from collector.app import Collector
    from collector.store import StoreError

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    collector = Collector(config)
    try:
        collector.start()
    except (OSError, StoreError) as error:
        # An OSError's text without its "[Errno 98]" prefix: the message names endpoint and cause.
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        logger.error(f"cannot start: {reason}", extra={"event": "collector.start_failed"})
        return 1
    except Exception:  # a plugin failing at start, say: still a clear exit, not a hung process
        logger.exception("cannot start", extra={"event": "collector.start_failed"})
        return 1
    while not stop.wait(1.0):
        pass
    logger.info("stopping: draining accepted requests", extra={"event": "collector.stopping"})
    collector.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
