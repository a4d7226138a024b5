"""A sub-agent in another process, for the cross-process baggage test.

Serves POST / on 127.0.0.1 (port printed on the first stdout line). Each request is handled
inside the context extracted from its headers with the global W3C propagators, runs
`cognocient_otel.run("sub-agent")`, starts one plain span in it, and answers with the run
the sub-agent joined and the spans it produced (as JSON).
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler, HTTPServer

from opentelemetry import context, propagate
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import cognocient_otel

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
cognocient_otel.instrument(tracer_provider=provider)
tracer = provider.get_tracer("subagent")


class Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        exporter.clear()
        token = context.attach(propagate.extract(dict(self.headers.items())))
        try:
            with cognocient_otel.run("sub-agent") as run, tracer.start_as_current_span("tool work"):
                joined = {"run_id": run.id, "feature": run.feature}
        finally:
            context.detach(token)
        spans = [
            {
                "name": span.name,
                "trace_id": f"{span.context.trace_id:032x}",
                "attributes": dict(span.attributes),
            }
            for span in exporter.get_finished_spans()
        ]
        body = json.dumps({**joined, "spans": spans}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    server = HTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    # The test stops it with SIGTERM; the default handler ends the process.
    server.serve_forever()
