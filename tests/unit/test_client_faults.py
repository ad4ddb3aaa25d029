"""The gateway's HTTP server log: a malformed request is one line, a server fault keeps its traceback."""

from __future__ import annotations

import logging

import pytest
from aiohttp.http_exceptions import ContentEncodingError, LineTooLong
from aiohttp.web import RequestPayloadError

from gateway.client_faults import LOGGER


def logged(exc: BaseException, caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    caplog.clear()
    try:
        raise exc
    except BaseException:
        LOGGER.exception("Error handling request from %s", "127.0.0.1")
    return caplog.records


def test_a_request_aiohttp_refused_is_one_line_at_info(caplog):
    caplog.set_level(logging.INFO, LOGGER.name)
    (record,) = logged(LineTooLong("a" * 9000, "8190"), caplog)
    assert (record.levelno, record.exc_info) == (logging.INFO, None)
    assert "LineTooLong" in record.getMessage() and len(record.getMessage()) < 300


def test_a_body_that_is_not_its_encoding_is_one_line_and_nothing_at_warning(caplog):
    payload_error = RequestPayloadError("Response payload is not completed")
    payload_error.__cause__ = ContentEncodingError("Can not decode content-encoding: gzip")
    caplog.set_level(logging.INFO, LOGGER.name)
    (record,) = logged(payload_error, caplog)
    assert "ContentEncodingError" in record.getMessage() and record.exc_info is None
    caplog.set_level(logging.WARNING, LOGGER.name)
    assert logged(payload_error, caplog) == []


def test_a_server_fault_keeps_its_traceback(caplog):
    caplog.set_level(logging.INFO, LOGGER.name)
    (record,) = logged(ValueError("a bug of ours"), caplog)
    assert record.levelno == logging.ERROR and record.exc_info is not None
