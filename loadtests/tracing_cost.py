"""What tracing costs per message, in CPU: the spans one message makes on `parley dev` (frame,
command publish, chat-core command with decide and store write, relay, delivery, one gateway
push), created through parley.tracing exactly as the pipeline creates them, exported over
OTLP/HTTP to a local sink (the exporter's thread included), at a sampling ratio.

`python -m loadtests.tracing_cost` runs each ratio (off, 1%, 100%) in a process of its own (the
SDK is configured once per process) and prints CPU microseconds per message: the tracing share of
a send, to set against the server's CPU per send measured by `make bench` (docs/benchmarks.md).
It measures CPU, not wall time, so other processes on a shared machine disturb it far less than
they disturb `make bench`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread

import msgspec
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from parley import tracing
from parley.tracing import Traced
from parley.records import Command, EventRecord
from parley import frames as F

#: Ratio -> label; None: tracing off (no OTEL_* variable set).
RATIOS: dict[str, float | None] = {"off": None, "1%": 0.01, "100%": 1.0}


class _Sink(BaseHTTPRequestHandler):
    """Accepts OTLP exports and drops them: what a collector costs Parley, without its work.
    HTTP/1.1 keep-alive, as a collector serves it: a new connection per export would add the
    connect to every batch. Counts the spans it got (decoding costs this process, not Parley's),
    so a run whose exporter dropped spans shows it."""

    protocol_version = "HTTP/1.1"
    received = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        export = ExportTraceServiceRequest.FromString(body)
        _Sink.received += sum(len(scope.spans) for rs in export.resource_spans for scope in rs.scope_spans)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


def one_message(command: Command, record: EventRecord) -> bool:
    """The tracing calls of one send, in pipeline order (gateway/ws.py, chat_core/worker.py,
    chat_core/relay.py, delivery/worker.py, gateway/hub.py); True if it was sampled."""
    frame = tracing.start("ws.frame", None, tracing.SpanKind.SERVER)
    with tracing.active(frame):
        if frame is not None:
            frame.update_name("ws Send")
        with tracing.active(publish := tracing.inner("command.publish", tracing.SpanKind.PRODUCER)):
            sent = command if publish is None else msgspec_replace(command, tracing.carried(publish))
    step = tracing.follow("chat_core.command", sent.trace, tracing.SpanKind.CONSUMER)
    with tracing.active(tracing.child("chat_core.decide", step)):
        stored = msgspec_replace(record, tracing.carried(step))
    now = time.time_ns()
    tracing.record("store.write", step, now, now)
    tracing.end_all([step] if step is not None else [])
    relayed, spans = tracing.hop([stored], "relay.publish", tracing.SpanKind.PRODUCER)
    tracing.end_all(spans)
    delivered, spans = tracing.hop(relayed, "delivery.fanout", tracing.SpanKind.CONSUMER)
    with tracing.active(tracing.follow("gateway.push", delivered[0].trace, tracing.SpanKind.CONSUMER)):
        pass
    tracing.end_all(spans)
    return frame is not None


def msgspec_replace(item: Traced, trace: str | None) -> Traced:
    return msgspec.structs.replace(item, trace=trace)


#: Sampled messages made between two flushes: 64 x 8 spans is one full export batch (the
#: BatchSpanProcessor's default max_export_batch_size, 512), the batch a busy server exports.
FLUSH_EVERY = 64
WARMUP = 1000


def run(messages: int, command: Command, record: EventRecord) -> None:
    """`messages` sends. A loop that makes spans faster than the exporter's thread gets the GIL
    to send them would fill its queue, and the spans it drops would cost nothing: after every
    full batch it exports (in this thread) instead, so every span made is encoded and sent, in
    batches the size a busy server sends."""
    flush = getattr(trace.get_tracer_provider(), "force_flush", None)
    sampled = 0
    for _ in range(messages):
        sampled += one_message(command, record)
        if sampled == FLUSH_EVERY and flush is not None:
            flush()
            sampled = 0
    if flush is not None:
        flush()


def measure(messages: int) -> float:
    """CPU microseconds per message in this process (tracing as the environment says): process
    CPU time, every thread (the exporter's included), not wall time."""
    tracing.configure("dev", f"bench-{os.getpid()}")
    command = Command("c1", "u1", "gw", "s1", F.Send(rid="r", conv="c1", cmid="m", text="hi"))
    record = EventRecord("c1", b'{"op":"event"}')
    run(WARMUP, command, record)
    started = time.process_time()
    run(messages, command, record)
    tracing.shutdown()  # the exporter's pending batches count too
    return (time.process_time() - started) / messages * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--sink", type=int, metavar="PORT",
                        help="only serve a discarding OTLP/HTTP sink on this port (for `make bench` runs with tracing on)")
    args = parser.parse_args()
    if args.sink is not None:
        ThreadingHTTPServer(("127.0.0.1", args.sink), _Sink).serve_forever()
    if args.child is not None:
        print(json.dumps(measure(args.messages)))
        return 0
    sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    Thread(target=sink.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{sink.server_address[1]}"
    for rep in range(args.repeat):
        for label, ratio in RATIOS.items():
            env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
            if ratio is not None:
                env |= {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_TRACES_SAMPLER_ARG": str(ratio)}
            _Sink.received = 0
            out = subprocess.run([sys.executable, "-m", "loadtests.tracing_cost", "--child", label,
                                  "--messages", str(args.messages)], env=env, capture_output=True, text=True,
                                 check=True)
            exported = _Sink.received / (WARMUP + args.messages)
            print(f"run {rep + 1} {label:>5}: {float(out.stdout):7.1f} us of CPU per message, "
                  f"{exported:.2f} spans exported per message")
    sink.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
