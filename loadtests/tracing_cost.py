"""What tracing costs per message, in CPU: the spans one message makes on `parley dev` (frame,
command publish, chat-core command with decide and store write, relay, delivery, one gateway
push), created through parley.tracing exactly as the pipeline creates them, exported over
OTLP/HTTP to a local sink (the exporter's thread included), at a sampling ratio.

`python -m loadtests.tracing_cost` runs each ratio (off, 1%, 100%) in a process of its own (the
SDK is configured once per process) and prints CPU microseconds per message: the tracing share of
a send, to set against the server's CPU per send measured by `make bench` (docs/benchmarks.md).
It measures CPU, not wall time, so other processes on a shared machine disturb it far less than
they disturb `make bench`.

`--system dev` or `--system up` measures the whole server instead: `loadtests.bench groups` on
`parley dev` or `parley up` once per ratio and round, alternating, each exporting to a sink in
this process, and prints the server's CPU per acked send (every process of the topology) and
how much more each ratio costs than off. It is a wall-clock load test: run it on a quiet machine.
Bench options go after `--`, e.g.
`python -m loadtests.tracing_cost --system up --rounds 2 -- -c 1000 -g 50 -r 500 -d 30 --seed-dir D`.

`--redis URL` measures what PARLEY_TRACE_CLIENTS costs a client call instead: CPU microseconds
per Redis GET against the server at URL, tracing on at 100%, without the client
instrumentations, with them outside any request (no span: most calls, and every call of an
unsampled request) and with them inside a sampled request (a span exported per call).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
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


#: --redis: how the calls are made -> whether the client instrumentations are on.
CLIENT_MODES = {"uninstrumented": False, "outside a request": True, "in a sampled request": True}


async def redis_calls(url: str, calls: int, in_request: bool) -> None:
    """`calls` GETs, one at a time; inside one sampled frame span if `in_request` (each GET a
    child span of it), exporting in this thread after every full batch as `run` does."""
    from redis.asyncio import Redis

    from parley.adapters.redis_state import connect_redis
    client: Redis = connect_redis(url)
    flush = getattr(trace.get_tracer_provider(), "force_flush", None)
    with tracing.active(tracing.start("ws.frame", None, tracing.SpanKind.SERVER) if in_request else None):
        for n in range(1, calls + 1):
            await client.get("tracing-cost")
            if in_request and flush is not None and n % (FLUSH_EVERY * 8) == 0:
                flush()
    await client.aclose()


def measure_redis(url: str, calls: int, mode: str) -> float:
    """CPU microseconds per Redis call in this process, tracing on, as `mode` says."""
    import asyncio
    tracing.configure("gateway", f"bench-{os.getpid()}", clients=CLIENT_MODES[mode])
    in_request = mode == "in a sampled request"
    asyncio.run(redis_calls(url, WARMUP, in_request))
    started = time.process_time()
    asyncio.run(redis_calls(url, calls, in_request))
    tracing.shutdown()
    return (time.process_time() - started) / calls * 1e6


def tracing_env(ratio: float | None, endpoint: str) -> dict[str, str]:
    """This environment without its OTEL_* variables, then tracing at `ratio` to `endpoint`
    (None: tracing off)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    if ratio is None:
        return env | {"OTEL_SDK_DISABLED": "true"}
    return env | {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_TRACES_SAMPLER_ARG": str(ratio)}


def system_runs(topology: str, rounds: int, bench_args: list[str], endpoint: str, out_dir: Path) -> int:
    """`loadtests.bench groups` per round and ratio on `topology`; the server's CPU per send."""
    per_send: dict[str, list[float]] = {label: [] for label in RATIOS}
    print(f"{'round':>5} {'sampling':>8} {'acked/s':>8} {'server CPU':>10} {'ms CPU/send':>11} "
          f"{'spans got':>10} {'other':>6}")  # spans: the whole run's, setup included
    for rnd in range(1, rounds + 1):
        for label, ratio in RATIOS.items():
            report = out_dir / f"round{rnd}-{label.rstrip('%')}.json"
            _Sink.received = 0
            subprocess.run([sys.executable, "-m", "loadtests.bench", "groups", "--topology", topology,
                            "--json", str(report), *bench_args], env=tracing_env(ratio, endpoint), check=True)
            step = json.loads(report.read_text())["steps"][0]
            acked, cpu_pct = step["sends_acked_per_s"], step["server_cpu_pct"]
            ms = 10 * cpu_pct / acked if acked and cpu_pct is not None else float("nan")
            per_send[label].append(ms)
            other = step.get("other_cpu_pct")
            print(f"{rnd:>5} {label:>8} {acked:>8.1f} {cpu_pct or float('nan'):>9.0f}% {ms:>11.3f} "
                  f"{_Sink.received:>10} {'-' if other is None else f'{other:.0f}%':>6}")
    off = statistics.median(per_send["off"])
    for label in list(RATIOS)[1:]:
        mid = statistics.median(per_send[label])
        print(f"{label:>5}: median {mid:.3f} ms CPU per send, {100 * (mid / off - 1):+.1f}% against off "
              f"(runs {', '.join(f'{v:.3f}' for v in per_send[label])}; off {', '.join(f'{v:.3f}' for v in per_send['off'])})")
    print(f"reports: {out_dir}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--system", choices=("dev", "up"),
                        help="measure a whole server under `loadtests.bench groups` instead (a wall-clock load: "
                             "quiet machine only); bench options after `--`")
    parser.add_argument("--rounds", type=int, default=2, help="--system: rounds of off, 1%%, 100%% (default 2)")
    parser.add_argument("--out", type=Path, help="--system: where the bench's JSON reports go (default: a temp dir)")
    parser.add_argument("bench_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    parser.add_argument("--redis", metavar="URL", help="measure CPU per Redis call with and without the client "
                                                          "instrumentations (PARLEY_TRACE_CLIENTS) instead")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--sink", type=int, metavar="PORT",
                        help="only serve a discarding OTLP/HTTP sink on this port (for `make bench` runs with tracing on)")
    args = parser.parse_args()
    if args.sink is not None:
        ThreadingHTTPServer(("127.0.0.1", args.sink), _Sink).serve_forever()
    if args.child is not None:
        print(json.dumps(measure_redis(args.redis, args.messages, args.child) if args.redis else measure(args.messages)))
        return 0
    sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    Thread(target=sink.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{sink.server_address[1]}"
    if args.system is not None:
        bench_args = [a for a in args.bench_args if a != "--"]
        out_dir = args.out or Path(tempfile.mkdtemp(prefix="parley-tracing-cost-"))
        out_dir.mkdir(parents=True, exist_ok=True)
        try:
            return system_runs(args.system, args.rounds, bench_args, endpoint, out_dir)
        finally:
            sink.shutdown()
    if args.redis is not None:
        for rep in range(args.repeat):
            for mode in CLIENT_MODES:
                _Sink.received = 0
                out = subprocess.run([sys.executable, "-m", "loadtests.tracing_cost", "--child", mode, "--redis",
                                      args.redis, "--messages", str(args.messages)], env=tracing_env(1.0, endpoint),
                                     capture_output=True, text=True, check=True)
                print(f"run {rep + 1} {mode:>20}: {float(out.stdout):7.1f} us of CPU per Redis call, "
                      f"{_Sink.received} spans exported")
        sink.shutdown()
        return 0
    for rep in range(args.repeat):
        for label, ratio in RATIOS.items():
            _Sink.received = 0
            out = subprocess.run([sys.executable, "-m", "loadtests.tracing_cost", "--child", label,
                                  "--messages", str(args.messages)], env=tracing_env(ratio, endpoint),
                                 capture_output=True, text=True, check=True)
            exported = _Sink.received / (WARMUP + args.messages)
            print(f"run {rep + 1} {label:>5}: {float(out.stdout):7.1f} us of CPU per message, "
                  f"{exported:.2f} spans exported per message")
    sink.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
