"""Recognising an LLM API request by its path and JSON body, wherever it is served."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cognocient_otel import semconv as sc

__all__ = ["API_ANTHROPIC_MESSAGES", "LLMRequest", "recognise"]

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
_FINGERPRINT_FIELDS = ("system", "messages", "input", "prompt")
# The body is parsed to read the model; bodies past this size are not worth the parse here.
_MAX_BODY_BYTES = 32 * 1024 * 1024


@dataclass(slots=True)
class LLMRequest:
    """An outgoing request recognised as an LLM call. `body_size` is the JSON body's length in bytes."""

    api: str
    operation: str
    model: str
    stream: bool
    max_output_tokens: int | None
    body: dict[str, Any]
    body_size: int

    @property
    def api_family(self) -> str:
        return sc.PROVIDER_ANTHROPIC if self.api == API_ANTHROPIC_MESSAGES else sc.PROVIDER_OPENAI

    def estimated_input_tokens(self) -> int:
        """Upper-ish estimate of the input tokens: the JSON body's bytes // 4 (at least 1).

        Counting the whole body (field names, tool schemas, images as base64) overestimates a
        little, which is the safe side for a budget reservation, and costs nothing to compute.
        """
        return max(1, self.body_size // 4)

    def fingerprint(self) -> str:
        """16 hex digits of blake2b over the model and the prompt fields; never the content itself."""
        digest = hashlib.blake2b(digest_size=8)
        digest.update(self.model.encode())
        body = self.body
        for field in _FINGERPRINT_FIELDS:
            if field in body:
                digest.update(b"\x00" + field.encode() + b"\x00")
                # Key order as sent: an SDK serialises the same request the same way every time.
                digest.update(json.dumps(body[field], separators=(",", ":")).encode())
        return digest.hexdigest()


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
    if matched is None or not content or len(content) > _MAX_BODY_BYTES or content[:1] != b"{":
        return None
    try:
        body = json.loads(content)
    except ValueError:
        return None
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return None
    max_output = None
    for field in _MAX_TOKENS_FIELDS:
        value = body.get(field)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            max_output = value
            break
    api, operation = matched
    return LLMRequest(
        api=api,
        operation=operation,
        model=model,
        stream=body.get("stream") is True,
        max_output_tokens=max_output,
        body=body,
        body_size=len(content),
    )
