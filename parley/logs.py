"""Log lines: one JSON object per line with time, level, role, instance and the trace ids of the
request being handled, and the structured access log; or plain text for a person at a terminal.

`PARLEY_LOG_FORMAT` (`json`, the default; `text`) and `PARLEY_LOG_LEVEL` (or `--log-level`)
choose; `PARLEY_ACCESS_LOG` (`true`/`false`) turns the access log on or off (default: on for
`parley run`, off for `parley dev`, where every page load would drown the log).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Awaitable, Callable

import msgspec
from aiohttp import web

from parley import tracing

ACCESS = logging.getLogger("parley.access")
#: The attributes every LogRecord has: anything else a caller passed with `extra=` is a field.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonLines(logging.Formatter):
    """A record as one JSON line. `trace_id`/`span_id` are those of the span current when it was
    logged (absent when tracing is off or the trace not sampled)."""

    def __init__(self, role: str, instance: str) -> None:
        super().__init__()
        self._role = role
        self._instance = instance
        self._encode = msgspec.json.Encoder().encode

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "role": self._role,
            "instance": self._instance,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        trace_ids = getattr(record, "trace_ids", None)
        if trace_ids is not None:
            line["trace_id"], line["span_id"] = trace_ids
        for key, value in vars(record).items():
            if key not in _STANDARD and key != "trace_ids":
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return self._encode(line).decode()


class _TraceIds(logging.Filter):
    """Stamps each record with the current span's ids while it is still current (a handler may
    format it later, elsewhere)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "trace_ids"):
            record.trace_ids = tracing.ids()
        return True


JsonLines.converter = time.gmtime


def configure(role: str, instance: str, level: str, fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_TraceIds())
    if fmt == "text":
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    else:
        handler.setFormatter(JsonLines(role, instance))
    # Not forced: a host that set up logging already (pytest's capture) keeps its handlers.
    logging.basicConfig(level=level.upper(), handlers=[handler])


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PROBES = frozenset({"/healthz", "/readyz", "/metrics"})


@web.middleware
async def access_log(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One line per HTTP request, logged inside its span (so it carries the request's trace ids):
    method, route, status and duration. The route is the pattern (`/v1/conv/{id}`), never the
    raw path, so lines group and no id lands in a label downstream."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        resource = request.match_info.route.resource
        # Probes and scrapes come every few seconds from every orchestrator and Prometheus.
        level = logging.DEBUG if request.path in PROBES else logging.INFO
        ACCESS.log(level, "%s %s %d", request.method, request.path, status, extra={
            "method": request.method, "route": resource.canonical if resource is not None else "unmatched",
            "status": status, "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            "remote": request.remote})
