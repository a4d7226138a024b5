"""Recognising an LLM API request by its path and JSON body, wherever it is served.

The body is parsed once (`jsonio.loads_object`); the fingerprint hashes the prompt members as
compact JSON of the parsed values.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

from cognocient_otel import semconv as sc
from cognocient_otel.llm.jsonio import dumps_compact, loads_object

__all__ = [
    "API_ANTHROPIC_MESSAGES", "CACHE_WRITES_1H", "CACHE_WRITES_5M", "LLMRequest", "match_path",
    "read_request", "recognise",
]

logger = logging.getLogger("cognocient_otel")
_told_of_large_bodies = False

API_OPENAI_CHAT = "openai.chat"
API_OPENAI_COMPLETIONS = "openai.completions"
API_OPENAI_RESPONSES = "openai.responses"
API_OPENAI_EMBEDDINGS = "openai.embeddings"
API_ANTHROPIC_MESSAGES = "anthropic.messages"

# Longest suffix first: "/chat/completions" must win over "/completions".
_PATH_SUFFIXES = (
    ("/chat/completions", API_OPENAI_CHAT, sc.OPERATION_CHAT),
    ("/completions", API_OPENAI_COMPLETIONS, sc.OPERATION_TEXT_COMPLETION),
    ("/responses", API_OPENAI_RESPONSES, sc.OPERATION_CHAT),
    ("/embeddings", API_OPENAI_EMBEDDINGS, sc.OPERATION_EMBEDDINGS),
    ("/messages", API_ANTHROPIC_MESSAGES, sc.OPERATION_CHAT),
)
_MAX_TOKENS_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
# Hashed in this order, each as compact JSON after a separator naming it.
_FINGERPRINT_SEPARATORS = {
    field: b"\x00" + field.encode() + b"\x00" for field in ("system", "messages", "input", "prompt")
}
# The body is parsed to read the model. Past this size it is not: the providers refuse such
# requests themselves (Anthropic's Messages API takes up to 32 MB, OpenAI up to 50 MB of
# images), so nothing is billed that the guard would have had to stop.
_MAX_BODY_BYTES = 64 * 1024 * 1024
# Past one call's bound a request's count is no real one: capped, it still blocks any budget,
# and the span carries what the collector accepts.
_MAX_COUNT = sc.MAX_CALL_TOKENS
# How many answers one request asks for: OpenAI's `n` (chat, completions), `best_of` (legacy
# completions, billed for every candidate).
_CHOICES_FIELDS = ("n", "best_of")
_CACHE_CONTROL = b'"cache_control"'
_ONE_HOUR_TTL = b'"1h"'
CACHE_WRITES_5M = "5m"
CACHE_WRITES_1H = "1h"


@dataclass(slots=True)
class LLMRequest:
    """An outgoing request recognised as an LLM call. `body_size` is the JSON body's length in
    bytes; `fingerprint` is 16 hex digits of blake2b over the model and the prompt members as
    sent (`system`, `messages`, `input`, `prompt`), never the content itself."""

    api: str
    operation: str
    model: str
    stream: bool
    max_output_tokens: int | None
    body_size: int
    fingerprint: str
    # Answers the request asks for (`n`, `best_of`): each is billed its own output tokens.
    choices: int = 1
    # Anthropic `cache_control` anywhere in the body: input may be billed at the cache-write rate,
    # "5m" (1.25x input) or, with a "1h" TTL anywhere, "1h" (2x input); "" without.
    cache_writes: str = ""

    @property
    def api_family(self) -> str:
        return sc.PROVIDER_ANTHROPIC if self.api == API_ANTHROPIC_MESSAGES else sc.PROVIDER_OPENAI

    def estimated_input_tokens(self) -> int:
        """Upper-ish estimate of the input tokens: the JSON body's bytes // 4 (at least 1).

        Counting the whole body (field names, tool schemas, images as base64) overestimates a
        little, which is the safe side for a budget reservation, and costs nothing to compute.
        """
        return max(1, self.body_size // 4)


def match_path(path: str) -> tuple[str, str] | None:
    """(api, operation) for an LLM API path, or None. Cheap: called for every request."""
    for suffix, api, operation in _PATH_SUFFIXES:
        if path.endswith(suffix):
            return api, operation
    return None


def recognise(method: str, path: str, content: bytes) -> LLMRequest | None:
    """An `LLMRequest` if this is a POST to an LLM API path whose JSON body names a `model`."""
    if method != "POST":
        return None
    matched = match_path(path)
    if matched is None:
        return None
    return read_request(matched[0], matched[1], content)


def read_request(api: str, operation: str, content: bytes) -> LLMRequest | None:
    """An `LLMRequest` from the body sent to an LLM API path, or None if it names no `model`."""
    if not content:
        return None
    if len(content) > _MAX_BODY_BYTES:
        _tell_of_large_body(len(content))
        return None
    if content[:1] != b"{" and content.lstrip()[:1] != b"{":  # JSON may start with white space
        return None
    body = loads_object(content)
    if body is None:
        return None
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return None
    max_output = None
    for field in _MAX_TOKENS_FIELDS:
        value = body.get(field)
        if type(value) is int and value > 0:  # parsed JSON: `type() is` excludes booleans
            max_output = min(value, _MAX_COUNT)
            break
    choices = 1
    if api != API_ANTHROPIC_MESSAGES:
        for field in _CHOICES_FIELDS:
            value = body.get(field)
            if type(value) is int and value > choices:
                choices = min(value, _MAX_COUNT)
    # Positional (field order of LLMRequest): keyword arguments cost about twice as much.
    return LLMRequest(
        api,
        operation,
        model,
        body.get("stream") is True,
        max_output,
        len(content),
        _fingerprint(model, body),
        choices,
        _cache_writes(api, content),
    )


def _cache_writes(api: str, content: bytes) -> str:
    if api != API_ANTHROPIC_MESSAGES or _CACHE_CONTROL not in content:
        return ""
    return CACHE_WRITES_1H if _ONE_HOUR_TTL in content else CACHE_WRITES_5M


def _tell_of_large_body(size: int) -> None:
    global _told_of_large_bodies
    if not _told_of_large_bodies:
        _told_of_large_bodies = True
        logger.warning(
            "an LLM API request body of %d bytes is over %d: such calls are not traced, costed or "
            "guarded by a budget (logged once)", size, _MAX_BODY_BYTES,
        )


def _fingerprint(model: str, body: dict[str, Any]) -> str:
    parts = [model.encode()]
    for field, separator in _FINGERPRINT_SEPARATORS.items():
        if field in body:
            parts.append(separator)
            # Key order as sent: an SDK serialises the same request the same way every time.
            parts.append(dumps_compact(body[field]))
    return hashlib.blake2b(b"".join(parts), digest_size=8).hexdigest()
