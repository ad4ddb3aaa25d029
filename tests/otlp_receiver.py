"""A small OTLP/HTTP trace receiver for tests: what an OpenTelemetry collector would get from
Parley's processes, decoded with opentelemetry-proto (no collector package exists here)."""

from __future__ import annotations

import asyncio
import gzip
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf.message import DecodeError

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


@dataclass(frozen=True)
class ReceivedSpan:
    trace_id: str
    span_id: str
    parent_id: str  # "" for a root span
    name: str
    kind: int
    service: str
    instance: str
    links: tuple[str, ...]  # span ids
    start_ns: int
    end_ns: int
    scope: str = ""  # the name of the instrumentation scope that made it ("parley" for Parley's own)


class OtlpReceiver:
    """Serves `POST /v1/traces` on a loopback port from a thread of its own, so it keeps
    receiving whatever event loop (or none) the test runs."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                try:
                    export = ExportTraceServiceRequest.FromString(body)
                except DecodeError:  # cut short: its sender was killed mid-export
                    self.send_response(400)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                receiver._received(export)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_: object) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _received(self, export: ExportTraceServiceRequest) -> None:
        for resource_spans in export.resource_spans:
            attrs = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(ReceivedSpan(
                        span.trace_id.hex(), span.span_id.hex(), span.parent_span_id.hex(), span.name, span.kind,
                        attrs.get("service.name", ""), attrs.get("service.instance.id", ""),
                        tuple(link.span_id.hex() for link in span.links), span.start_time_unix_nano,
                        span.end_time_unix_nano, scope_spans.scope.name))

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        return [s for s in list(self.spans) if s.trace_id == trace_id]

    async def wait_for(self, found: Callable[[], bool], timeout_s: float = 15.0) -> None:
        """Until `found()`: spans arrive in batches, a few hundred ms after they end."""
        async with asyncio.timeout(timeout_s):
            while not found():
                await asyncio.sleep(0.1)

