"""An `openai` client whose transport replays answers recorded from `LLMServer`.

For the in-process instrumentation benchmarks: the real SDK does all its work (request building,
httpx2 send, response parsing), but no socket and no server thread take part, so what is timed or
counted is the client's own work. The answers are recorded once from the real local server.
"""

from __future__ import annotations

from typing import Any

import httpx2
import openai
from instrumentation_overhead import MESSAGES

from cognocient_otel.testing import LLMServer

Recorded = dict[bool, tuple[list[tuple[bytes, bytes]], list[bytes]]]


def record_answers() -> Recorded:
    """The server's raw answer (headers, body chunks) to the benchmark's call, streamed and not."""
    recorded: Recorded = {}
    with LLMServer() as server, httpx2.Client() as recorder:
        for stream in (False, True):
            body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 20}
            if stream:
                body.update(stream=True, stream_options={"include_usage": True})
            with recorder.stream("POST", server.base_url + "/v1/chat/completions", json=body) as answer:
                chunks = list(answer.iter_raw())
                headers = [(k, v) for k, v in answer.headers.raw if k.lower() != b"transfer-encoding"]
            recorded[stream] = (headers, chunks)
    return recorded


class _Replay(httpx2.SyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    def __iter__(self) -> Any:
        yield from self._chunks


class ReplayTransport(httpx2.BaseTransport):
    def __init__(self, recorded: Recorded) -> None:
        self._recorded = recorded

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        headers, chunks = self._recorded[b'"stream":true' in request.content]
        return httpx2.Response(200, headers=headers, stream=_Replay(chunks))


def replay_client(recorded: Recorded | None = None) -> openai.OpenAI:
    return openai.OpenAI(
        base_url="http://127.0.0.1:9/v1",
        api_key="bench",
        max_retries=0,
        http_client=openai.DefaultHttpxClient(transport=ReplayTransport(recorded or record_answers())),
    )
