"""`cognocient-collector [--config FILE] [--version]`.

Exit codes: 0 after a clean stop (SIGTERM or SIGINT drain), 2 for a bad configuration (the
message names the field), 1 when the collector cannot start (port taken, store unusable).
"""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys
import threading

from collector import __version__
from collector.config import ConfigError, load_config
from collector.logs import setup_logging

logger = logging.getLogger("collector")

# Collect the youngest generation after this many more container objects than were freed, not
# 700 (CPython's default). Ingest allocates and frees a few objects per span attribute, and the
# default made about one young collection per 800 spans, each walking what the pipeline holds at
# that moment: ~1.2 us of CPU per span (~6 % of ingest). Memory that really grows (new runs)
# still triggers a collection after 20,000 objects, a few MB at most.
YOUNG_GENERATION_THRESHOLD = 20_000


def tune_garbage_collector() -> None:
    """For a long-running server: what is loaded at start (imports, the runs loaded back from the
    store) is moved out of the collector's reach for good (`gc.freeze`), so that the older
    generations' collections do not walk it again and again, and young collections are rarer."""
    gc.collect()
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, middle, old)


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
    tune_garbage_collector()
    while not stop.wait(1.0):
        pass
    logger.info("stopping: draining accepted requests", extra={"event": "collector.stopping"})
    collector.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
