"""Reading usage from a server-sent-events answer, cheaply.

While the application reads the stream, the reader only keeps the raw chunks (one list append
per chunk). When the stream ends (exhausted, failed or closed) it finds the few events it needs
with byte scans that run in C, and parses just those: the first event (model, id), the last
event carrying `usage`, the last `finish_reason`, Anthropic's `message_start` / `message_delta`,
the Responses API's `response.created` and terminal event, and any `error` event. A chat stream
of hundreds of chunks costs a join, a few `find`s and two or three small JSON parses.

Past `_KEEP_BYTES` of stream, only the head and a bounded tail are kept: usage events come last.
"""

from __future__ import annotations

import re
from collections import deque
from typing import Any

from cognocient_otel.llm import requests as api_ids
from cognocient_otel.llm.jsonio import loads_object
from cognocient_otel.llm.usage import ResponseSummary

__all__ = ["SseReader"]

_KEEP_BYTES = 8 * 1024 * 1024
_TAIL_BYTES = 256 * 1024
_USAGE_KEY = b'"usage"'
_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')
_FINISH_REASON_KEY = b'"finish_reason"'
_FINISH_REASON = re.compile(rb'"finish_reason"\s*:\s*"')
_PLAIN_FINISH_REASON = re.compile(rb'"finish_reason"\s*:\s*"([A-Za-z0-9_.-]*)"')
# Occurrences tried from the end of the stream before one forward scan of it all.
_BACKWARD_TRIES = 8
_ERROR_EVENT = re.compile(rb'event:[ \t]*error[ \t]*\n|"type"\s*:\s*"error"')
_RESPONSES_TERMINAL = (b'"response.completed"', b'"response.incomplete"', b'"response.failed"')


class SseReader:
    """Collects SSE bytes; `finish()` fills the `ResponseSummary` from what was received."""

    __slots__ = ("_api", "_chunks", "_size", "_tail", "_tail_size", "summary")

    def __init__(self, api: str, summary: ResponseSummary) -> None:
        self._api = api
        self._chunks: list[bytes] = []
        self._size = 0
        self._tail: deque[bytes] | None = None
        self._tail_size = 0  # bytes in `_tail`, kept as they come and go (summing it per chunk was quadratic)
        self.summary = summary

    def feed(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._tail is None:
            if self._size <= _KEEP_BYTES:
                self._chunks.append(chunk)
                return
            self._tail = deque()
        tail = self._tail
        tail.append(chunk)
        self._tail_size += len(chunk)
        # Bounded: drop old tail chunks once the newest ones cover _TAIL_BYTES.
        while len(tail) > 1 and self._tail_size - len(tail[0]) >= _TAIL_BYTES:
            self._tail_size -= len(tail.popleft())

    def feed_all(self, chunks: list[bytes]) -> None:
        """`feed` each chunk, in one step while the stream is within `_KEEP_BYTES`."""
        size = self._size + sum(map(len, chunks))
        if self._tail is None and size <= _KEEP_BYTES:
            self._size = size
            self._chunks.extend(chunks)
            return
        for chunk in chunks:
            self.feed(chunk)

    def finish(self) -> None:
        head = b"".join(self._chunks)
        tail = b"".join(self._tail) if self._tail is not None else b""
        self._chunks = []
        self._tail = None
        if b"\r" in head or b"\r" in tail:
            head, tail = head.replace(b"\r\n", b"\n"), tail.replace(b"\r\n", b"\n")
        api = self._api
        if api == api_ids.API_ANTHROPIC_MESSAGES:
            self._anthropic(head, tail)
        elif api == api_ids.API_OPENAI_RESPONSES:
            self._responses(head, tail)
        else:
            self._chat(head, tail)
        self._errors(tail or head)

    # --- per API --------------------------------------------------------------------------------
    def _chat(self, head: bytes, tail: bytes) -> None:
        # Each JSON parse costs about as much as the rest of this put together, so only the
        # usage event is parsed: every chunk of a chat stream repeats the model and id, and the
        # finish reasons are plain identifiers that a pattern reads as well as a parser.
        summary = self.summary
        last = tail or head
        usage_event = None
        usage_at = _last_match(_USAGE_OBJECT, _USAGE_KEY, last)
        if usage_at >= 0:
            usage_event = _event_data(last, usage_at)
        model = usage_event.get("model") if usage_event is not None else None
        response_id = usage_event.get("id") if usage_event is not None else None
        if isinstance(model, str) and model and isinstance(response_id, str) and response_id:
            summary.response_model = model
            if summary.response_id is None:
                summary.response_id = response_id
        else:
            first = _event_data(head, head.find(b"data:"))
            if first is not None:
                summary._read_identity(first)
        finish = _last_match(_FINISH_REASON, _FINISH_REASON_KEY, last)
        if finish >= 0:
            reason = _plain_finish_reason(last, finish)
            if reason is not None:
                summary.finish_reasons = [reason]
            else:
                event = _event_data(last, finish)
                if event is not None:
                    summary._read_choices(event.get("choices"))
        if usage_event is not None and isinstance(usage_event.get("usage"), dict):
            summary._read_openai_usage(usage_event["usage"])
            summary.usage_complete = True

    def _responses(self, head: bytes, tail: bytes) -> None:
        summary = self.summary
        created = _event_data(head, head.find(b'"response.created"'))
        if created is not None and isinstance(created.get("response"), dict):
            summary._read_identity(created["response"])
        last = tail or head
        terminal_at = max(last.rfind(marker) for marker in _RESPONSES_TERMINAL)
        terminal = _event_data(last, terminal_at)
        if terminal is not None and isinstance(terminal.get("response"), dict):
            response = terminal["response"]
            summary._read_identity(response)
            usage = response.get("usage")
            summary._read_responses_usage(usage)
            summary.usage_complete = isinstance(usage, dict)
            status = response.get("status")
            if isinstance(status, str) and status != "completed":
                summary.finish_reasons = [status]

    def _anthropic(self, head: bytes, tail: bytes) -> None:
        summary = self.summary
        start = _event_data(head, head.find(b'"message_start"'))
        if start is not None and isinstance(start.get("message"), dict):
            summary._read_anthropic_message(start["message"])
            summary._read_anthropic_usage(start["message"].get("usage"))
        last = tail or head
        delta = _event_data(last, last.rfind(b'"message_delta"'))
        if delta is not None:
            summary._read_anthropic_usage(delta.get("usage"))
            stop = delta.get("delta")
            if isinstance(stop, dict) and isinstance(stop.get("stop_reason"), str):
                summary.finish_reasons = [stop["stop_reason"]]
            summary.usage_complete = True

    def _errors(self, data: bytes) -> None:
        # A plain substring test first: the regex below is slow over a whole stream.
        if b"error" not in data:
            return
        match = _ERROR_EVENT.search(data)
        if match is None:
            return
        event = _event_data(data, match.end() - 1)
        if event is None:
            return
        error = event.get("error")
        if isinstance(error, dict):
            self.summary.error_type = str(error.get("type") or error.get("code") or "stream_error")
        elif event.get("type") == "error":
            self.summary.error_type = str(event.get("code") or "stream_error")


def _last_match(pattern: re.Pattern[bytes], literal: bytes, data: bytes) -> int:
    """Start of the last match of `pattern` (which begins with `literal`) in `data`, or -1.

    The events read are near the end, so occurrences of `literal` are tried from the end first;
    after a few near misses (`"finish_reason": null` in every chunk) one forward scan decides.
    """
    end = len(data)
    for _ in range(_BACKWARD_TRIES):
        position = data.rfind(literal, 0, end)
        if position < 0:
            return -1
        if pattern.match(data, position):
            return position
        end = position + len(literal) - 1
    position = -1
    for match in pattern.finditer(data):
        position = match.start()
    return position


def _plain_finish_reason(data: bytes, position: int) -> str | None:
    """The finish reason at `position` when it is a plain identifier and the only one in its
    event (what parsing the event would give); else None (parse it)."""
    match = _PLAIN_FINISH_REASON.match(data, position)
    if match is None:
        return None
    start = data.rfind(b"\n\n", 0, position) + 1
    end = data.find(b"\n\n", position)
    if data.count(_FINISH_REASON_KEY, start, end if end >= 0 else len(data)) != 1:
        return None
    return match.group(1).decode()


def _event_data(data: bytes, position: int) -> dict[str, Any] | None:
    """The JSON `data:` of the SSE event containing byte `position`, or None."""
    if position < 0:
        return None
    start = data.rfind(b"\n\n", 0, position)
    start = 0 if start < 0 else start + 2
    end = data.find(b"\n\n", position)
    if end < 0:
        end = len(data)
    block = data[start:end]
    if block.startswith(b"data:") and b"\n" not in block:  # the usual event: one data line
        payload = block[5:].lstrip(b" ")
    else:
        lines = [line[5:].lstrip(b" ") for line in block.split(b"\n") if line.startswith(b"data:")]
        if not lines:
            return None
        payload = lines[0] if len(lines) == 1 else b"\n".join(lines)
    if payload == b"[DONE]":
        return None
    return loads_object(payload)
