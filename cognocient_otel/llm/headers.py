"""The `X-Cost-Run-ID` / `X-Cost-Feature` headers: reading them, adding ours, and step counters
of runs known only from them (teams that tag their calls by hand, with no `run()` in the code).

Both run on every LLM call, so they use httpx's (and httpx2's) header list directly where it is
known to be there: the public API builds a list of every header to read them
(`Headers.raw`, ~25 K instructions for the ~17 headers an SDK sends) and scans every header
in Python to set one (`Headers.__setitem__`, ~15 K). `Headers._list` holds
`(name, lowercased name, value)` byte triples in httpx 0.28 and httpx2 2.x; each headers class
is probed once for exactly that layout (`_layout_of`), and any other class (or a future httpx
that changes it) goes through the public API.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from operator import itemgetter
from typing import Any
from urllib.parse import quote, unquote

from cognocient_otel import semconv as sc

__all__ = ["HeaderRunSteps", "add_cost_headers", "content_headers", "cost_headers"]

_HEADER_RUN_CAPACITY = 4096
_RUN_HEADER = sc.HEADER_RUN_ID_LOWER.encode()
_FEATURE_HEADER = sc.HEADER_FEATURE_LOWER.encode()
_PREFIX = b"x-cost-"
_COST_KEYS = frozenset((_RUN_HEADER, _FEATURE_HEADER))
_LOWERED_NAME = itemgetter(1)
_CONTENT_TYPE = b"content-type"
_CONTENT_ENCODING = b"content-encoding"
_RUN_HEADER_NAME = sc.HEADER_RUN_ID.encode()
_FEATURE_HEADER_NAME = sc.HEADER_FEATURE.encode()

# Headers class -> whether its `_list` has the (name, lowered name, value) layout.
_layouts: dict[type, bool] = {}


def _layout_of(cls: type) -> bool:
    """Probe a headers class once: does `_list` hold what its public API reads and writes?"""
    known = _layouts.get(cls)
    if known is not None:
        return known
    try:
        probe = cls([("X-Probe", "one")])
        items = probe._list
        fits = type(items) is list and items == [(b"X-Probe", b"x-probe", b"one")]
        if fits:
            items.append((b"X-Added", b"x-added", b"two"))
            fits = probe.raw == [(b"X-Probe", b"one"), (b"X-Added", b"two")] and probe["x-added"] == "two"
    except Exception:
        fits = False
    _layouts[cls] = fits
    return fits


def _header_list(headers: Any) -> list[tuple[bytes, bytes, bytes]] | None:
    cls = type(headers)
    fits = _layouts.get(cls)
    if fits is None:
        fits = _layout_of(cls)
    return headers._list if fits else None  # type: ignore[no-any-return]


def cost_headers(headers: Any) -> tuple[str | None, str | None, bool]:
    """`X-Cost-Run-ID` and `X-Cost-Feature` (None when absent or empty), and whether either
    header is there at all. Most requests carry neither, which one pass in C says."""
    items = _header_list(headers)
    if items is not None:
        if _COST_KEYS.isdisjoint(map(_LOWERED_NAME, items)):
            return None, None, False
        lowered_items = [(lowered, value) for _, lowered, value in items]
    else:
        raw = headers.raw
        if _PREFIX not in b"\n".join([key for key, _ in raw]).lower():
            return None, None, False
        lowered_items = [(key.lower(), value) for key, value in raw]
    run_id = feature = None
    present = False
    for lowered, value in lowered_items:
        if lowered == _RUN_HEADER:
            run_id = _read_value(value)
            present = True
        elif lowered == _FEATURE_HEADER:
            feature = _read_value(value)
            present = True
    return run_id or None, feature or None, present


def _read_value(value: bytes) -> str:
    """A header's text, percent-decoded (what `header_value` encoded, from this process or
    another one that sent it on)."""
    text = value.decode("latin-1")
    return unquote(text) if "%" in text else text


# Kept as they are in a header value besides letters and digits: visible ASCII but `%`, which
# is percent-encoded itself (`%25`) so that a value read back decodes to what was sent.
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%" and not chr(c).isalnum())


def header_value(text: str) -> str:
    """`text` as an HTTP header value: as it is when it is one (visible ASCII and inner spaces,
    no `%`), else percent-encoded as UTF-8, like W3C baggage; `cost_headers` decodes it. Control
    characters would make the HTTP library refuse the request, and non-ASCII the SDKs' ASCII
    header encoding: the user's call must not fail because of a run id or a feature name."""
    if text.isascii() and text.isprintable() and text.strip() == text and "%" not in text:
        return text
    return quote(text, safe=_HEADER_SAFE)


def add_cost_headers(headers: Any, run_id: str | None, feature: str | None, *, replace: bool) -> None:
    """Set `X-Cost-Run-ID` / `X-Cost-Feature` to the values given (None: leave that one alone),
    through `header_value`.

    `replace` is False when `cost_headers` found neither header: then a plain append is what
    `Headers.__setitem__` would do.
    """
    if run_id is not None:
        run_id = header_value(run_id)
    if feature is not None:
        feature = header_value(feature)
    items = None if replace else _header_list(headers)
    if items is None:
        if run_id is not None:
            headers[sc.HEADER_RUN_ID] = run_id
        if feature is not None:
            headers[sc.HEADER_FEATURE] = feature
        return
    # ASCII by `header_value`: the same bytes in any encoding `Headers.__setitem__` would use.
    if run_id is not None:
        items.append((_RUN_HEADER_NAME, _RUN_HEADER, run_id.encode()))
    if feature is not None:
        items.append((_FEATURE_HEADER_NAME, _FEATURE_HEADER, feature.encode()))


def content_headers(headers: Any) -> tuple[str, str]:
    """`Content-Type` and `Content-Encoding` of an answer ("" when absent).

    `headers.get()` first works out the encoding of every header name and value, then raises
    and catches a KeyError for a missing one; a Python loop over the raw list is cheaper, and
    searching the lowered names in C cheaper still.
    """
    items = _header_list(headers)
    if items is not None:
        lowered = list(map(_LOWERED_NAME, items))
        if lowered.count(_CONTENT_TYPE) <= 1 and lowered.count(_CONTENT_ENCODING) <= 1:
            content_type = content_encoding = ""
            if _CONTENT_TYPE in lowered:
                content_type = items[lowered.index(_CONTENT_TYPE)][2].decode("latin-1")
            if _CONTENT_ENCODING in lowered:
                content_encoding = items[lowered.index(_CONTENT_ENCODING)][2].decode("latin-1")
            return content_type, content_encoding
    types: list[str] = []
    encodings: list[str] = []
    for key, value in headers.raw:
        if len(key) == 12 and key.lower() == _CONTENT_TYPE:
            types.append(value.decode("latin-1"))
        elif len(key) == 16 and key.lower() == _CONTENT_ENCODING:
            encodings.append(value.decode("latin-1"))
    # Repeated headers read as httpx joins them.
    return ", ".join(types), ", ".join(encodings)


class HeaderRunSteps:
    """Step counters of runs known only from `X-Cost-Run-ID` headers (no `run()` in the code)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: OrderedDict[str, int] = OrderedDict()

    def next(self, run_id: str) -> int:
        with self._lock:
            step = self._counters.pop(run_id, 0) + 1
            self._counters[run_id] = step
            if len(self._counters) > _HEADER_RUN_CAPACITY:
                self._counters.popitem(last=False)
            return step
