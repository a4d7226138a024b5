"""The HTTP port: OTLP/HTTP `POST /v1/traces`, the runs API, `/healthz`, and extra routes.

A stdlib `ThreadingHTTPServer` (one thread per connection, HTTP/1.1 keep-alive) is enough for
this traffic and has no dependency; what makes it safe with bad clients is here: a read timeout
per connection, a body size limit checked before reading (413), gzip inflated with a bound so a
small bomb cannot become gigabytes (413), a Content-Length required (411), and every handler
error turned into a JSON 500 rather than a dropped connection.

Extension point (issue 4): `HttpServer.add_route("POST", "/v1/budget/check", handler)` where
`handler(request: HttpRequest) -> HttpResponse`; patterns may hold `{name}` segments, found in
`request.path_params`.
"""

from __future__ import annotations

import json
import logging
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from google.protobuf import json_format
from google.rpc import code_pb2, status_pb2

from collector.config import split_endpoint
from collector.receiver import ExportOutcome, TraceReceiver

logger = logging.getLogger(__name__)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


@dataclass
class HttpRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes = b""
    path_params: dict[str, str] = field(default_factory=dict)

    def query_value(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None

    def json(self) -> Any:
        """The body as JSON; raises ValueError with a message for the client when it is not."""
        try:
            return json.loads(self.body or b"null")
        except (ValueError, UnicodeDecodeError) as error:
            raise ValueError(f"body is not JSON: {error}") from None
        except RecursionError:  # nested too deeply: the client's error, not a 500
            raise ValueError("body is not JSON: nested too deeply") from None


@dataclass
class HttpResponse:
    status: int
    body: bytes = b""
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> HttpResponse:
        body = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
        return cls(status, body, JSON, headers or {})

    @classmethod
    def error(cls, status: int, message: str, headers: dict[str, str] | None = None) -> HttpResponse:
        return cls.json(status, {"error": message}, headers)


RouteHandler = Callable[[HttpRequest], HttpResponse]


MAX_GZIP_MEMBERS = 1000
_GZIP_CHUNK = 64 * 1024


def gunzip(body: bytes, limit: int) -> bytes | HttpResponse:
    """The inflated body, or the error response: 400 unless it is whole gzip, 413 over `limit`.

    Every member is inflated (RFC 1952 allows several, and `cat a.gz b.gz` makes them); a
    stream cut short, or bytes after the last member that are neither gzip nor zero padding, are
    refused rather than accepted as whatever part of them inflated, which would lose the rest
    without a word. The input goes in in chunks, so that what zlib hands back after a member
    (`unused_data`, a copy) is at most a chunk: handing it the rest of the body after each of
    thousands of tiny members copied the body each time. An empty body stays empty."""
    view = memoryview(body)
    parts: list[bytes] = []
    size = offset = members = 0
    while offset < len(body):
        if body[offset] == 0 and body.count(0, offset) == len(body) - offset:
            break  # zero padding after the last member, which gzip(1) ignores too (a member starts 1f 8b)
        members += 1
        if members > MAX_GZIP_MEMBERS:
            return HttpResponse.error(400, f"body is gzip of more than {MAX_GZIP_MEMBERS} members")
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        while not inflater.eof:
            if offset >= len(body):
                return HttpResponse.error(400, "body is not valid gzip: it ends inside a member")
            chunk = view[offset:offset + _GZIP_CHUNK]
            offset += len(chunk)
            try:
                part = inflater.decompress(chunk, limit + 1 - size)
            except zlib.error as error:
                return HttpResponse.error(400, f"body is not valid gzip: {error}")
            size += len(part)
            if size > limit or inflater.unconsumed_tail:
                return HttpResponse.error(413, f"body inflates to more than the limit of {limit} bytes")
            parts.append(part)
        offset -= len(inflater.unused_data)  # the bytes after this member: the next one's
    return b"".join(parts)


class _Router:
    def __init__(self) -> None:
        self._routes: list[tuple[str, list[str], RouteHandler]] = []

    def add(self, method: str, pattern: str, handler: RouteHandler) -> None:
        self._routes.append((method.upper(), pattern.strip("/").split("/"), handler))

    def match(self, method: str, path: str) -> tuple[RouteHandler | None, dict[str, str], bool]:
        """(handler, path params, whether the path exists for another method)."""
        segments = path.strip("/").split("/")
        path_known = False
        for route_method, pattern, handler in self._routes:
            if len(pattern) != len(segments):
                continue
            params: dict[str, str] = {}
            for expected, actual in zip(pattern, segments, strict=True):
                if expected.startswith("{") and expected.endswith("}"):
                    if not actual:
                        break
                    # Split first, then decode: a run id may hold a "/" sent as %2F.
                    params[expected[1:-1]] = unquote(actual)
                elif expected != actual:
                    break
            else:
                if route_method == method:
                    return handler, params, True
                path_known = True
        return None, {}, path_known


class HttpServer:
    def __init__(
        self,
        *,
        receiver: TraceReceiver,
        endpoint: str,
        max_body_bytes: int,
        read_timeout_seconds: float,
    ) -> None:
        self.receiver = receiver
        self.max_body_bytes = max_body_bytes
        self.router = _Router()
        self.router.add("POST", "/v1/traces", self._traces)
        self._in_flight = 0
        self._idle = threading.Condition()
        self.stopping = False
        host, port = split_endpoint(endpoint)
        handler = _make_handler(self, read_timeout_seconds)
        self.httpd = ThreadingHTTPServer((host, port), handler, bind_and_activate=True)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="cognocient-http", daemon=True)

    def add_route(self, method: str, pattern: str, handler: RouteHandler) -> None:
        self.router.add(method, pattern, handler)

    def start(self) -> None:
        self._thread.start()

    def stop(self, grace: float) -> None:
        """Stop accepting connections; wait (up to `grace`) for requests being handled."""
        self.stopping = True
        # shutdown() waits for serve_forever() to notice: on a server never started (the collector
        # failed to start after binding this port) it would wait forever.
        if self._thread.is_alive():
            self.httpd.shutdown()
        with self._idle:
            self._idle.wait_for(lambda: self._in_flight == 0, timeout=grace)
        self.httpd.server_close()

    def handle(self, request: HttpRequest) -> HttpResponse:
        handler, params, path_known = self.router.match(request.method, request.path)
        if handler is None:
            if path_known:
                return HttpResponse.error(405, f"{request.method} is not allowed on {request.path}")
            return HttpResponse.error(404, f"no such endpoint: {request.path}")
        request.path_params = params
        with self._idle:
            self._in_flight += 1
        try:
            return handler(request)
        except Exception:
            logger.exception("HTTP handler failed", extra={"event": "http.failed", "path": request.path})
            return HttpResponse.error(500, "internal error")
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    # -- OTLP/HTTP ----------------------------------------------------------------------------

    def _traces(self, request: HttpRequest) -> HttpResponse:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        stats = self.receiver.stats
        if content_type not in (PROTOBUF, JSON):
            stats.requests.inc(("http", "415"))
            return HttpResponse.error(415, "Content-Type must be application/x-protobuf or application/json")
        outcome = self.receiver.export_body(request.body, "http", json=content_type == JSON)
        response = _otlp_response(outcome, content_type)
        stats.requests.inc(("http", str(response.status)))
        return response


_HTTP_STATUS = {"ok": 200, "malformed": 400, "too_large": 413, "overloaded": 429, "unavailable": 503,
                "internal": 500}
_RPC_CODE = {"malformed": code_pb2.INVALID_ARGUMENT, "too_large": code_pb2.RESOURCE_EXHAUSTED,
             "overloaded": code_pb2.RESOURCE_EXHAUSTED, "unavailable": code_pb2.UNAVAILABLE,
             "internal": code_pb2.INTERNAL}


def _encode(message: Any, content_type: str) -> bytes:
    if content_type == PROTOBUF:
        return message.SerializeToString()
    return json.dumps(json_format.MessageToDict(message), separators=(",", ":")).encode()


def _otlp_response(outcome: ExportOutcome, content_type: str) -> HttpResponse:
    status = _HTTP_STATUS[outcome.kind]
    headers = {}
    if outcome.retry_after_seconds:
        headers["Retry-After"] = str(outcome.retry_after_seconds)
    if outcome.kind == "ok":
        return HttpResponse(status, _encode(outcome.response(), content_type), content_type, headers)
    message = status_pb2.Status(code=_RPC_CODE[outcome.kind], message=outcome.message)
    return HttpResponse(status, _encode(message, content_type), content_type, headers)


def _make_handler(server: HttpServer, read_timeout_seconds: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = read_timeout_seconds
        server_version = "cognocient-collector"
        sys_version = ""

        def do_GET(self) -> None:
            self._serve(read_body=False)

        def do_POST(self) -> None:
            self._serve(read_body=True)

        def do_PUT(self) -> None:
            self._serve(read_body=True)

        def do_DELETE(self) -> None:
            self._serve(read_body=False)

        def _serve(self, *, read_body: bool) -> None:
            try:
                body_or_error = self._read_body() if read_body else b""
                if isinstance(body_or_error, HttpResponse):
                    self._send(body_or_error, close=True)
                    return
                url = urlsplit(self.path)
                request = HttpRequest(
                    method=self.command,
                    path=url.path,
                    query=parse_qs(url.query, keep_blank_values=True),
                    headers={name.lower(): value for name, value in self.headers.items()},
                    body=body_or_error,
                )
                self._send(server.handle(request), close=server.stopping)
            except (TimeoutError, ConnectionError):
                self.close_connection = True

        def _read_body(self) -> bytes | HttpResponse:
            if self.headers.get("Transfer-Encoding", "").lower() not in ("", "identity"):
                return HttpResponse.error(411, "send the body with a Content-Length, not chunked")
            lengths = set(self.headers.get_all("Content-Length") or ())
            if not lengths:
                return HttpResponse.error(411, "Content-Length required")
            if len(lengths) > 1:  # RFC 9110 8.6: which one frames the body is unknowable
                return HttpResponse.error(400, "Content-Length given more than once, with different values")
            [length_text] = lengths
            try:
                length = int(length_text)
            except ValueError:
                return HttpResponse.error(400, "Content-Length is not a number")
            limit = server.max_body_bytes
            if length < 0:
                return HttpResponse.error(400, "Content-Length is negative")
            if length > limit:
                server.receiver.stats.requests.inc(("http", "413"))
                return HttpResponse.error(413, f"body of {length} bytes is over the limit of {limit} bytes")
            body = self.rfile.read(length)
            if len(body) < length:
                raise ConnectionError("client closed the connection mid-body")
            encoding = self.headers.get("Content-Encoding", "identity").strip().lower()
            if encoding == "gzip":
                body = gunzip(body, limit)
                if isinstance(body, HttpResponse) and body.status == 413:
                    server.receiver.stats.requests.inc(("http", "413"))
            elif encoding not in ("identity", ""):
                return HttpResponse.error(415, f"Content-Encoding {encoding!r} not supported (gzip is)")
            return body

        def _send(self, response: HttpResponse, *, close: bool) -> None:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            for name, value in response.headers.items():
                self.send_header(name, value)
            if close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(response.body)

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("http %s", format % args)

    return Handler
