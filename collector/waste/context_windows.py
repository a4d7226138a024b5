"""Context window sizes of models: `waste.context_windows` first, then genai-prices' ModelInfo.

Looked up once per (provider, model) and cached: the ingest loop must not pay a genai-prices
model lookup per span (DESIGN.md). Unknown models have no window, and the context-window check
of `context_bloat` simply does not apply to them.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from genai_prices.data_snapshot import get_snapshot

from cognocient_otel.pricing import normalize_provider

__all__ = ["ContextWindows"]

_MAX_CACHED = 4096


class ContextWindows:
    """`window(model=, provider=)` -> tokens or None. Safe to share between threads."""

    def __init__(self, overrides: Mapping[str, int] | None = None) -> None:
        self._overrides = {model.lower(): tokens for model, tokens in (overrides or {}).items()}
        self._cache: dict[tuple[str | None, str], int | None] = {}
        self._lock = threading.Lock()

    def window(self, *, model: str | None, provider: str | None = None) -> int | None:
        if not model:
            return None
        key = (provider, model)
        try:
            return self._cache[key]
        except KeyError:
            pass
        tokens = self._resolve(model, normalize_provider(provider))
        with self._lock:
            if len(self._cache) < _MAX_CACHED:  # model names come from spans: keep the cache bounded
                self._cache[key] = tokens
        return tokens

    def _resolve(self, model: str, provider_id: str | None) -> int | None:
        override = self._overrides.get(model.lower())
        if override is not None:
            return override
        snapshot = get_snapshot()
        for attempt in dict.fromkeys((provider_id, None)):
            try:
                _provider, model_info = snapshot.find_provider_model(model, None, attempt, None)
            except LookupError:
                continue
            return model_info.context_window
        return None
