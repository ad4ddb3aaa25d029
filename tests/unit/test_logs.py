"""Log lines: one JSON object per line with the fields the docs promise, the access log's fields,
and a traceback kept whole in `exc`."""

from __future__ import annotations

import json
import logging

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from parley import logs


def formatted(record: logging.LogRecord) -> dict[str, object]:
    logs._TraceIds().filter(record)
    line = logs.JsonLines("gateway", "host-1").format(record)
    assert "\n" not in line
    return json.loads(line)


def test_a_line_has_time_level_role_instance_logger_and_message() -> None:
    record = logging.LogRecord("parley.x", logging.WARNING, __file__, 1, "batch of %d not stored", (3,), None)
    line = formatted(record)
    assert line["level"] == "warning" and line["msg"] == "batch of 3 not stored"
    assert (line["role"], line["instance"], line["logger"]) == ("gateway", "host-1", "parley.x")
    assert str(line["time"]).endswith("Z") and "trace_id" not in line  # tracing is off here


def test_a_traceback_stays_whole_in_one_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys
        record = logging.LogRecord("parley.x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = formatted(record)
    assert "Traceback" in str(line["exc"]) and "ValueError: boom" in str(line["exc"])


async def test_the_access_log_has_method_route_status_and_duration(caplog) -> None:  # type: ignore[no-untyped-def]
    async def conv(request: web.Request) -> web.Response:
        return web.json_response({"id": request.match_info["conv"]})

    app = web.Application(middlewares=[logs.access_log])
    app.router.add_get("/v1/conv/{conv}", conv)
    caplog.set_level(logging.DEBUG, logger="parley.access")
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/v1/conv/c123")).status == 200
        assert (await client.get("/nowhere")).status == 404
    found, missing = [r for r in caplog.records if r.name == "parley.access"]
    assert (found.method, found.route, found.status) == ("GET", "/v1/conv/{conv}", 200)  # type: ignore[attr-defined]
    assert found.levelno == logging.INFO and found.duration_ms >= 0  # type: ignore[attr-defined]
    assert (missing.status, missing.route) == (404, "unmatched")  # type: ignore[attr-defined]
