"""Response bodies of the fake LLM server, shaped like the OpenAI and Anthropic APIs.

Each builder takes the decided `Answer` (model, token counts, text) and returns either one JSON
body or the list of SSE events (`(event name or None, JSON data)`) of a streamed answer.
"""

from __future__ import annotations

import base64
import struct
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

SseEvent = tuple[str | None, Any]

# Embedding vectors are short and fixed: tests care about usage, not geometry.
_EMBEDDING_DIMENSIONS = 8


@dataclass(frozen=True)
class Answer:
    """What the server answers: token counts in the OpenTelemetry convention.

    `input_tokens` includes `cached_tokens` and `cache_creation_tokens`; `output_tokens`
    includes `reasoning_tokens`. Anthropic's API reports input excluding the cached parts, so
    its builders subtract them.
    """

    model: str
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    cache_creation_tokens: int
    text: str


def _new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def _text_chunks(text: str, pieces: int = 3) -> list[str]:
    if not text:
        return [""]
    size = max(1, -(-len(text) // pieces))
    return [text[i : i + size] for i in range(0, len(text), size)]


# --- OpenAI chat completions ---------------------------------------------------------------------
def _openai_chat_usage(answer: Answer) -> dict[str, Any]:
    return {
        "prompt_tokens": answer.input_tokens,
        "completion_tokens": answer.output_tokens,
        "total_tokens": answer.input_tokens + answer.output_tokens,
        "prompt_tokens_details": {"cached_tokens": answer.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": answer.reasoning_tokens, "audio_tokens": 0},
    }


def openai_chat(answer: Answer) -> dict[str, Any]:
    return {
        "id": _new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": answer.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer.text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": _openai_chat_usage(answer),
        "system_fingerprint": "fp_fake",
    }


def openai_chat_stream(answer: Answer, *, include_usage: bool) -> list[SseEvent]:
    completion_id = _new_id("chatcmpl-")
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
        return {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": answer.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }

    events: list[SseEvent] = [(None, chunk({"role": "assistant", "content": ""}, None))]
    events += [(None, chunk({"content": piece}, None)) for piece in _text_chunks(answer.text)]
    events.append((None, chunk({}, "stop")))
    if include_usage:
        events.append(
            (
                None,
                {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": answer.model,
                    "choices": [],
                    "usage": _openai_chat_usage(answer),
                },
            )
        )
    events.append((None, "[DONE]"))
    return events


# --- OpenAI legacy completions -------------------------------------------------------------------
def openai_completion(answer: Answer) -> dict[str, Any]:
    return {
        "id": _new_id("cmpl-"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": answer.model,
        "choices": [{"index": 0, "text": answer.text, "logprobs": None, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": answer.input_tokens,
            "completion_tokens": answer.output_tokens,
            "total_tokens": answer.input_tokens + answer.output_tokens,
        },
    }


# --- OpenAI responses ----------------------------------------------------------------------------
def _openai_response_object(answer: Answer, *, response_id: str, completed: bool) -> dict[str, Any]:
    output = [
        {
            "type": "message",
            "id": f"msg_{response_id[5:]}",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": answer.text, "annotations": [], "logprobs": []}],
        }
    ]
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed" if completed else "in_progress",
        "model": answer.model,
        "output": output if completed else [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": (
            {
                "input_tokens": answer.input_tokens,
                "input_tokens_details": {"cached_tokens": answer.cached_tokens},
                "output_tokens": answer.output_tokens,
                "output_tokens_details": {"reasoning_tokens": answer.reasoning_tokens},
                "total_tokens": answer.input_tokens + answer.output_tokens,
            }
            if completed
            else None
        ),
    }


def openai_response(answer: Answer) -> dict[str, Any]:
    return _openai_response_object(answer, response_id=_new_id("resp_"), completed=True)


def openai_response_stream(answer: Answer) -> list[SseEvent]:
    response_id = _new_id("resp_")
    item_id = f"msg_{response_id[5:]}"
    sequence = iter(range(1_000_000))
    events: list[SseEvent] = [
        (
            "response.created",
            {
                "type": "response.created",
                "sequence_number": next(sequence),
                "response": _openai_response_object(answer, response_id=response_id, completed=False),
            },
        )
    ]
    message_item = {
        "type": "message",
        "id": item_id,
        "status": "in_progress",
        "role": "assistant",
        "content": [],
    }
    empty_part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    events.append(_response_event("response.output_item.added", sequence, output_index=0, item=message_item))
    events.append(
        _response_event(
            "response.content_part.added",
            sequence,
            item_id=item_id,
            output_index=0,
            content_index=0,
            part=empty_part,
        )
    )
    for piece in _text_chunks(answer.text):
        events.append(
            (
                "response.output_text.delta",
                {
                    "type": "response.output_text.delta",
                    "sequence_number": next(sequence),
                    "item_id": item_id,
                    "output_index": 0,
                    "content_index": 0,
                    "delta": piece,
                    "logprobs": [],
                },
            )
        )
    done_part = dict(empty_part, text=answer.text)
    events.append(
        _response_event(
            "response.output_text.done",
            sequence,
            item_id=item_id,
            output_index=0,
            content_index=0,
            text=answer.text,
            logprobs=[],
        )
    )
    events.append(
        _response_event(
            "response.content_part.done",
            sequence,
            item_id=item_id,
            output_index=0,
            content_index=0,
            part=done_part,
        )
    )
    done_item = dict(message_item, status="completed", content=[done_part])
    events.append(_response_event("response.output_item.done", sequence, output_index=0, item=done_item))
    events.append(
        (
            "response.completed",
            {
                "type": "response.completed",
                "sequence_number": next(sequence),
                "response": _openai_response_object(answer, response_id=response_id, completed=True),
            },
        )
    )
    return events


def _response_event(event_type: str, sequence: Iterator[int], **fields: Any) -> SseEvent:
    return (event_type, {"type": event_type, "sequence_number": next(sequence), **fields})


# --- OpenAI embeddings ---------------------------------------------------------------------------
def openai_embeddings(answer: Answer, *, inputs: int, encoding_format: str | None) -> dict[str, Any]:
    vector = [round(0.1 * (i + 1), 3) for i in range(_EMBEDDING_DIMENSIONS)]
    # The openai SDK asks for base64 by default and decodes little-endian float32 itself.
    embedding: Any = (
        base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        if encoding_format == "base64"
        else vector
    )
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": embedding} for i in range(max(1, inputs))],
        "model": answer.model,
        "usage": {"prompt_tokens": answer.input_tokens, "total_tokens": answer.input_tokens},
    }


# --- Anthropic messages --------------------------------------------------------------------------
def _anthropic_uncached_input(answer: Answer) -> int:
    return max(0, answer.input_tokens - answer.cached_tokens - answer.cache_creation_tokens)


def anthropic_message(answer: Answer) -> dict[str, Any]:
    return {
        "id": _new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": answer.model,
        "content": [{"type": "text", "text": answer.text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": _anthropic_uncached_input(answer),
            "output_tokens": answer.output_tokens,
            "cache_creation_input_tokens": answer.cache_creation_tokens,
            "cache_read_input_tokens": answer.cached_tokens,
        },
    }


def anthropic_message_stream(answer: Answer) -> list[SseEvent]:
    start_message = anthropic_message(answer)
    start_message["content"] = []
    start_message["stop_reason"] = None
    start_message["usage"] = dict(start_message["usage"], output_tokens=1)
    events: list[SseEvent] = [
        ("message_start", {"type": "message_start", "message": start_message}),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
    ]
    for piece in _text_chunks(answer.text):
        events.append(
            (
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}},
            )
        )
    events += [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": answer.output_tokens},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return events


# --- Errors --------------------------------------------------------------------------------------
_ERROR_TYPES = {
    400: ("invalid_request_error", "invalid_request_error"),
    401: ("authentication_error", "authentication_error"),
    403: ("permission_error", "permission_error"),
    404: ("not_found_error", "not_found_error"),
    429: ("rate_limit_exceeded", "rate_limit_error"),
    500: ("server_error", "api_error"),
    529: ("server_error", "overloaded_error"),
}


def openai_error(status: int, message: str) -> dict[str, Any]:
    openai_type, _ = _ERROR_TYPES.get(status, ("server_error", "api_error"))
    return {"error": {"message": message, "type": openai_type, "param": None, "code": openai_type}}


def anthropic_error(status: int, message: str) -> dict[str, Any]:
    _, anthropic_type = _ERROR_TYPES.get(status, ("server_error", "api_error"))
    return {"type": "error", "error": {"type": anthropic_type, "message": message}}
