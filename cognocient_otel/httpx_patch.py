"""Patching `Client.send` / `AsyncClient.send` of httpx and httpx2 (whichever are importable).

`send` is above the transport layer that opentelemetry-instrumentation-httpx wraps
(`HTTPTransport.handle_request`, or a client's own transport), so our LLM span is current while
the transport runs and the HTTP client span becomes its child, whichever instrumentor was
applied first. It also catches clients built with custom transports (the openai and anthropic
SDKs build their own `httpx.Client` subclasses).
"""

from __future__ import annotations

import importlib
from typing import Any

from opentelemetry import context
from opentelemetry.instrumentation.utils import unwrap
from wrapt import wrap_function_wrapper

from cognocient_otel.budget.guard import BudgetExceeded
from cognocient_otel.llm.call import CallTracer, LLMCall, log_failure_once
from cognocient_otel.llm.headers import content_headers
from cognocient_otel.llm.jsonio import loads_object
from cognocient_otel.llm.sse import SseReader
from cognocient_otel.llm.streams import StreamObserver, stream_classes
from cognocient_otel.llm.usage import ResponseSummary

__all__ = ["install", "patched_modules", "uninstall"]

_MODULE_NAMES = ("httpx", "httpx2")


class _Active:
    """The CallTracer in use; replaced on re-instrumentation, None when uninstrumented."""

    call_tracer: CallTracer | None = None


_active = _Active()
_patched: dict[str, Any] = {}


def patched_modules() -> list[str]:
    return list(_patched)


def install(call_tracer: CallTracer) -> None:
    _active.call_tracer = call_tracer
    for name in _MODULE_NAMES:
        if name in _patched:
            continue
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        sync_stream, async_stream = stream_classes(module)
        wrap_function_wrapper(module, "Client.send", _sync_send_wrapper(sync_stream))
        wrap_function_wrapper(module, "AsyncClient.send", _async_send_wrapper(async_stream))
        _patched[name] = module


def uninstall() -> None:
    _active.call_tracer = None
    for name, module in list(_patched.items()):
        unwrap(module.Client, "send")
        unwrap(module.AsyncClient, "send")
        del _patched[name]


def _begin(call_tracer: CallTracer, args: tuple[Any, ...], kwargs: dict[str, Any]) -> LLMCall | None:
    request = args[0] if args else kwargs.get("request")
    try:
        return call_tracer.begin(request)
    except BudgetExceeded:
        raise
    except Exception as exc:
        log_failure_once("starting an LLM span", exc)
        return None


def _sync_send_wrapper(traced_stream: type) -> Any:
    def send(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        call_tracer = _active.call_tracer
        if call_tracer is None:
            return wrapped(*args, **kwargs)
        call = _begin(call_tracer, args, kwargs)
        if call is None:
            return wrapped(*args, **kwargs)
        token = context.attach(call.context)
        try:
            response = wrapped(*args, **kwargs)
        except BaseException as exc:
            call.fail(exc)
            raise
        finally:
            context.detach(token)
        _after_send(call, response, kwargs.get("stream", False), traced_stream)
        return response

    return send


def _async_send_wrapper(traced_stream: type) -> Any:
    async def send(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        call_tracer = _active.call_tracer
        if call_tracer is None:
            return await wrapped(*args, **kwargs)
        call = _begin(call_tracer, args, kwargs)
        if call is None:
            return await wrapped(*args, **kwargs)
        token = context.attach(call.context)
        try:
            response = await wrapped(*args, **kwargs)
        except BaseException as exc:
            call.fail(exc)
            raise
        finally:
            context.detach(token)
        _after_send(call, response, kwargs.get("stream", False), traced_stream)
        return response

    return send


def _after_send(call: LLMCall, response: Any, streamed: bool, traced_stream: type) -> None:
    """Finish now from a read body, or wrap the unread stream to finish when it is read."""
    status_code = 0
    try:
        status_code = response.status_code
        if status_code >= 400:
            call.finish(None, status_code=status_code, streamed=streamed)
            return
        content_type, content_encoding = content_headers(response.headers)
        # A response built from bytes (mock transports, caches) is read and closed already.
        if streamed and not response.is_closed:
            observer = StreamObserver(
                call,
                content_type=content_type,
                content_encoding=content_encoding,
                status_code=status_code,
            )
            response.stream = traced_stream(response.stream, observer)
            return
        summary = ResponseSummary()
        content = response.content
        if "event-stream" in content_type:
            reader = SseReader(call.request.api, summary)
            reader.feed(content)
            reader.finish()
        elif content:
            # None for a gateway's HTML page or a truncated body: no usage to read.
            summary.read_body(call.request.api, loads_object(content))
        call.finish(summary, status_code=status_code, streamed=streamed)
    except Exception as exc:
        log_failure_once("reading an LLM answer", exc)
        call.finish(None, status_code=status_code, streamed=streamed)
