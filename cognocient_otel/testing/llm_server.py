"""A local LLM server that speaks the OpenAI and Anthropic HTTP APIs, for tests, benchmarks and demos.

    with LLMServer() as server:
        client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="test")
        anthropic_client = anthropic.Anthropic(base_url=server.base_url, api_key="test")

Endpoints: `POST /v1/chat/completions`, `/v1/completions`, `/v1/responses` and `/v1/messages`
(each streamed as SSE when the body says `"stream": true`), and `POST /v1/embeddings`.
It runs a stdlib `ThreadingHTTPServer` on 127.0.0.1 (port chosen by the OS) in a daemon
thread, answers concurrent requests, keeps connections alive (streams use chunked encoding),
and records every request it receives.

Default answer: status 200, the model asked for (or `model_override`), input tokens estimated
as the request's message characters // 4 (at least 1), output tokens = the request's
`max_tokens` / `max_completion_tokens` / `max_output_tokens` or 20, capped at 4096. `script()`
queues exact answers (errors, token counts, delays) for the next requests, in order.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from cognocient_otel.testing import llm_payloads as payloads

__all__ = ["LLMServer", "RecordedRequest", "ScriptedResponse"]

_DEFAULT_OUTPUT_TOKENS = 20
_MAX_OUTPUT_TOKENS = 4096


@dataclass
class ScriptedResponse:
    """One queued answer. `input_tokens=None` estimates them from the request like the default.

    Token counts follow the OpenTelemetry convention (input includes cached and cache-creation
    tokens, output includes reasoning); the Anthropic endpoint reports them Anthropic's way.
    A status >= 400 answers with the provider's JSON error shape (and `Retry-After` if set).
    """

    status: int = 200
    input_tokens: int | None = None
    output_tokens: int = 20
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cache_creation_tokens: int = 0
    model: str | None = None
    text: str = "ok"
    delay_seconds: float = 0.0
    retry_after: float | None = None


@dataclass
class RecordedRequest:
    """A request the server received: path without query, lower-cased headers, JSON body or None."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any
    received_at: float = field(default_factory=time.time)


def estimate_input_tokens(body: Any) -> int:
    """Characters of the request's prompt-like fields // 4, at least 1."""
    if not isinstance(body, dict):
        return 1
    characters = 0
    for key in ("messages", "input", "system", "prompt"):
        if key in body:
            characters += _text_length(body[key])
    return max(1, characters // 4)


def _text_length(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(_text_length(item) for item in value)
    if isinstance(value, dict):
        return sum(_text_length(item) for key, item in value.items() if key in ("content", "text", "input"))
    return 0


def _requested_output_tokens(body: dict[str, Any]) -> int:
    for key in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
        value = body.get(key)
        if isinstance(value, int) and value > 0:
            return min(value, _MAX_OUTPUT_TOKENS)
    return _DEFAULT_OUTPUT_TOKENS


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up (a stream closed early, a reset keep-alive connection) is the
        # client's right, not a server error worth a traceback on the test output.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class LLMServer:
    """The fake LLM API server. Start it with `start()` or `with LLMServer() as server:`."""

    def __init__(self, *, model_override: str | None = None) -> None:
        self.model_override = model_override
        self.requests: list[RecordedRequest] = []
        self._script: deque[ScriptedResponse] = deque()
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> LLMServer:
        if self._httpd is not None:
            return self
        handler = type("_BoundHandler", (_Handler,), {"llm_server": self})
        httpd = _Server(("127.0.0.1", 0), handler)
        self._httpd = httpd
        self.base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
        self._thread = threading.Thread(target=httpd.serve_forever, name="llm-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> LLMServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # --- test API ------------------------------------------------------------------------------
    def script(self, responses: list[ScriptedResponse]) -> None:
        """Queue answers for the next requests (in arrival order); the default resumes after them."""
        with self._lock:
            self._script.extend(responses)

    def request_count(self, path: str | None = None) -> int:
        """Requests received, all or those whose path (without query) equals `path`."""
        with self._lock:
            if path is None:
                return len(self.requests)
            return sum(1 for request in self.requests if request.path == path)

    def clear(self) -> None:
        """Forget recorded requests and queued answers."""
        with self._lock:
            self.requests.clear()
            self._script.clear()

    # --- used by the handler -------------------------------------------------------------------
    def _record_and_plan(self, request: RecordedRequest) -> ScriptedResponse | None:
        with self._lock:
            self.requests.append(request)
            return self._script.popleft() if self._script else None


class _Handler(BaseHTTPRequestHandler):
    llm_server: LLMServer
    protocol_version = "HTTP/1.1"
    # Unbuffered small writes plus Nagle would add delayed-ACK stalls to every answer.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request stderr log."""

    def do_GET(self) -> None:
        self._send_json(
            404, {"error": {"message": f"no such endpoint: GET {self.path}", "type": "not_found"}}
        )

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        path = self.path.split("?", 1)[0]
        request = RecordedRequest(
            method="POST",
            path=path,
            headers={key.lower(): value for key, value in self.headers.items()},
            json=body,
        )
        scripted = self.llm_server._record_and_plan(request)
        if scripted is not None and scripted.delay_seconds > 0:
            time.sleep(scripted.delay_seconds)
        is_anthropic = path.endswith("/messages")
        if not isinstance(body, dict):
            self._send_error(
                400, "request body must be a JSON object", anthropic=is_anthropic, retry_after=None
            )
            return
        if scripted is not None and scripted.status >= 400:
            self._send_error(
                scripted.status,
                f"scripted error {scripted.status}",
                anthropic=is_anthropic,
                retry_after=scripted.retry_after,
            )
            return
        answer = self._answer(body, scripted)
        stream = body.get("stream") is True
        if path.endswith("/chat/completions"):
            if stream:
                include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                self._send_sse(payloads.openai_chat_stream(answer, include_usage=include_usage))
            else:
                self._send_json(200, payloads.openai_chat(answer))
        elif path.endswith("/completions"):
            self._send_json(200, payloads.openai_completion(answer))
        elif path.endswith("/responses"):
            if stream:
                self._send_sse(payloads.openai_response_stream(answer))
            else:
                self._send_json(200, payloads.openai_response(answer))
        elif path.endswith("/embeddings"):
            inputs = body.get("input")
            count = (
                len(inputs) if isinstance(inputs, list) and inputs and not isinstance(inputs[0], int) else 1
            )
            self._send_json(
                200,
                payloads.openai_embeddings(answer, inputs=count, encoding_format=body.get("encoding_format")),
            )
        elif is_anthropic:
            if stream:
                self._send_sse(payloads.anthropic_message_stream(answer))
            else:
                self._send_json(200, payloads.anthropic_message(answer))
        else:
            self._send_json(
                404, {"error": {"message": f"no such endpoint: POST {path}", "type": "not_found"}}
            )

    def _answer(self, body: dict[str, Any], scripted: ScriptedResponse | None) -> payloads.Answer:
        server = self.llm_server
        requested_model = body.get("model") if isinstance(body.get("model"), str) else "unknown"
        if scripted is None:
            scripted = ScriptedResponse(output_tokens=_requested_output_tokens(body))
        input_tokens = scripted.input_tokens
        if input_tokens is None:
            input_tokens = estimate_input_tokens(body)
        output_tokens = 0 if self.path.split("?", 1)[0].endswith("/embeddings") else scripted.output_tokens
        return payloads.Answer(
            model=scripted.model or server.model_override or requested_model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cached_tokens=scripted.cached_tokens,
            reasoning_tokens=scripted.reasoning_tokens,
            cache_creation_tokens=scripted.cache_creation_tokens,
            text=scripted.text,
        )

    def _send_error(self, status: int, message: str, *, anthropic: bool, retry_after: float | None) -> None:
        body = (
            payloads.anthropic_error(status, message) if anthropic else payloads.openai_error(status, message)
        )
        extra = {"retry-after": f"{retry_after:g}"} if retry_after is not None else {}
        self._send_json(status, body, extra_headers=extra)

    def _send_json(self, status: int, body: Any, *, extra_headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for key, value in (extra_headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_sse(self, events: list[payloads.SseEvent]) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        try:
            for event, data in events:
                text = data if isinstance(data, str) else json.dumps(data)
                frame = (f"event: {event}\n" if event else "") + f"data: {text}\n\n"
                self._write_chunk(frame.encode())
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            # The client closed the stream early; that is its right.
            self.close_connection = True

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
