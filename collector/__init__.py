"""Cognocient collector: OTLP receivers -> processing stages -> per-run rollup, Prometheus, runs API."""

from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("cognocient-otel")
except metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
