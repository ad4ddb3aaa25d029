"""Malformed HTTP requests are the client's fault, not the server's: they are logged in one line.

aiohttp answers a request it cannot parse (a header over its size limit, a bad URL) with `400`,
and cannot read a body that is not the gzip its Content-Encoding claims; either way it logs the
parser's exception with a traceback, as if the server had failed. The gateway's HTTP server logs
through `LOGGER` (the application's `handler_args`), whose filter turns those records into one
line at INFO; every other record, a real server fault included, passes unchanged.
"""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web import RequestPayloadError

LOGGER = logging.getLogger("gateway.http")
#: A fault's description is cut here: a header over the limit is quoted in its message.
_DESCRIPTION_CHARS = 200


def is_client_fault(exc: BaseException | None) -> bool:
    """A request aiohttp refused as malformed (4xx), or a body it could not read as sent."""
    if isinstance(exc, RequestPayloadError):
        return True
    return isinstance(exc, HttpProcessingError) and 400 <= exc.code < 500


def describe(exc: BaseException) -> str:
    cause = exc.__cause__ if isinstance(exc, RequestPayloadError) and exc.__cause__ is not None else exc
    text = cause.message if isinstance(cause, HttpProcessingError) else str(cause)
    return f"{type(cause).__name__}: {' '.join(text.split())}"[:_DESCRIPTION_CHARS]


class ClientFaultsInOneLine(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None or not is_client_fault(exc):
            return True
        if not LOGGER.isEnabledFor(logging.INFO):
            return False
        record.msg, record.args = "%s: %s", (record.getMessage(), describe(exc))
        record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        record.exc_info, record.exc_text = None, None
        return True


LOGGER.addFilter(ClientFaultsInOneLine())
