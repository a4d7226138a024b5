"""JSON for the per-call path: pydantic-core's parser and serialiser (Rust), with the standard
`json` module as the fallback, so that what is accepted is exactly what `json.loads` accepts.

`pydantic_core.from_json` parses a small LLM answer in well under half the time of
`json.loads` (and builds the same objects); it refuses only a few inputs that `json.loads`
takes, such as lone UTF-16 surrogates in `\\u` escapes, and those go to `json.loads`.
pydantic (hence pydantic-core) is a dependency of this package and of the LLM SDKs.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic_core import from_json, to_json

__all__ = ["dumps_compact", "loads_object"]


def loads_object(data: bytes | str) -> dict[str, Any] | None:
    """The JSON object in `data`, or None if `data` is not valid JSON or not an object."""
    try:
        # Keys only in the string cache: prompts and answers are not kept alive by it.
        parsed = from_json(data, cache_strings="keys")
    except ValueError:
        try:
            parsed = json.loads(data)
        except (ValueError, RecursionError):
            return None
    return parsed if type(parsed) is dict else None


def dumps_compact(value: Any) -> bytes:
    """Compact UTF-8 JSON of a parsed JSON value (deterministic: same value, same bytes)."""
    try:
        return to_json(value)
    except ValueError:  # lone surrogates: json.dumps escapes them
        return json.dumps(value, separators=(",", ":")).encode()
