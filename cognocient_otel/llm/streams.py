"""Wrapping a streamed response body so usage is read as the application reads it.

httpx's response hooks cannot read a body without consuming it, so the response's `stream`
(what `iter_raw()` / `aiter_raw()` / `close()` use) is replaced by a wrapper that yields the
same bytes, feeds a copy to an SSE or JSON reader, and finishes the call's span when the
stream is exhausted, fails, or is closed. Abandoned early, the span records what was seen with
`cognocient.usage.complete=false`.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

from cognocient_otel.llm.call import LLMCall, log_failure_once
from cognocient_otel.llm.sse import SseReader
from cognocient_otel.llm.usage import JsonBodyReader, ResponseSummary

__all__ = ["FLUSH_EVERY", "StreamObserver", "stream_classes"]

# Chunks held before the readers see them: bounds the memory of a long stream's pending list.
FLUSH_EVERY = 64


class StreamObserver:
    """Reads a copy of the raw body bytes; finishes the call exactly once."""

    __slots__ = ("_call", "_decompress", "_ended", "_reader", "_status_code", "pending", "summary")

    def __init__(self, call: LLMCall, *, content_type: str, content_encoding: str, status_code: int) -> None:
        self._call = call
        # Chunks the stream wrapper appended and `flush()` has not read yet: appending is a C
        # call per chunk, where calling `feed` per chunk was two Python calls, and the readers
        # take a batch in C too (`feed_all`).
        self.pending: list[bytes] = []
        self._status_code = status_code
        self._ended = False  # a stream read to its end is closed too: the second end() is a no-op
        self.summary = ResponseSummary()
        api = call.request.api
        self._reader: SseReader | JsonBodyReader | None = (
            SseReader(api, self.summary)
            if "event-stream" in content_type
            else JsonBodyReader(api, self.summary)
        )
        encoding = content_encoding.strip().lower()
        self._decompress: Any = None
        if encoding in ("gzip", "deflate"):
            # wbits 47: zlib or gzip header, detected automatically.
            self._decompress = zlib.decompressobj(47)
        elif encoding not in ("", "identity"):
            self._reader = None  # br / zstd: not decoded here; the span says usage is incomplete

    def flush(self) -> None:
        """Read the pending chunks (the wrapper calls this every `FLUSH_EVERY` chunks)."""
        pending = self.pending
        if not pending:
            return
        chunks = pending[:]
        pending.clear()
        reader = self._reader
        if reader is None:
            return
        try:
            if self._decompress is not None:
                decompress = self._decompress.decompress
                chunks = [decompress(chunk) for chunk in chunks]
            reader.feed_all(chunks)
        except Exception as exc:
            self._reader = None
            log_failure_once("reading a streamed LLM answer", exc)

    def end(self, error: BaseException | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        self.flush()
        call = self._call
        try:
            if self._reader is not None:
                self._reader.finish()
                self._reader = None
        except Exception as exc:
            log_failure_once("reading a streamed LLM answer", exc)
        if error is not None and not self.summary.usage_complete:
            self.summary.error_type = self.summary.error_type or type(error).__qualname__
        call.finish(self.summary, status_code=self._status_code, streamed=True)


def stream_classes(module: Any) -> tuple[type, type]:
    """Sync and async stream wrappers subclassing the module's byte streams (httpx or httpx2):
    `Response.iter_raw` checks `isinstance(stream, SyncByteStream)`."""

    class TracedSyncStream(module.SyncByteStream):  # type: ignore[misc, name-defined]
        def __init__(self, inner: Any, observer: StreamObserver) -> None:
            self._inner = inner
            self._observer = observer

        def __iter__(self) -> Iterator[bytes]:
            observer = self._observer
            pending = observer.pending
            append = pending.append
            try:
                for chunk in self._inner:
                    append(chunk)
                    if len(pending) >= FLUSH_EVERY:
                        observer.flush()
                    yield chunk
            except GeneratorExit:
                observer.end()
                raise
            except BaseException as exc:
                observer.end(exc)
                raise
            observer.end()

        def close(self) -> None:
            try:
                self._inner.close()
            finally:
                self._observer.end()

    class TracedAsyncStream(module.AsyncByteStream):  # type: ignore[misc, name-defined]
        def __init__(self, inner: Any, observer: StreamObserver) -> None:
            self._inner = inner
            self._observer = observer

        async def __aiter__(self) -> AsyncIterator[bytes]:
            observer = self._observer
            pending = observer.pending
            append = pending.append
            try:
                async for chunk in self._inner:
                    append(chunk)
                    if len(pending) >= FLUSH_EVERY:
                        observer.flush()
                    yield chunk
            except GeneratorExit:
                observer.end()
                raise
            except BaseException as exc:
                observer.end(exc)
                raise
            observer.end()

        async def aclose(self) -> None:
            try:
                await self._inner.aclose()
            finally:
                self._observer.end()

    TracedSyncStream.__name__ = TracedSyncStream.__qualname__ = f"Traced{module.__name__}SyncStream"
    TracedAsyncStream.__name__ = TracedAsyncStream.__qualname__ = f"Traced{module.__name__}AsyncStream"
    return TracedSyncStream, TracedAsyncStream
