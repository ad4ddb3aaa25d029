"""The FCM HTTP client's translation of libcurl's results into what firebase-admin reads:
response headers (only parsed for a refusal) and httpx's error classes."""

from __future__ import annotations

import httpx
import pytest
from curl_cffi import CurlECode, CurlError

from push.providers.fcm import _header_lines, _httpx_error

REQUEST = httpx.Request("POST", "https://fcm.example/v1/projects/p/messages:send")


def test_the_headers_of_the_final_response_are_read() -> None:
    raw = (b"HTTP/1.1 100 Continue\r\n\r\n"
           b"HTTP/2 429\r\ncontent-type: application/json\r\nretry-after: 7\r\nx-note: a: b\r\n\r\n")
    headers = httpx.Headers(_header_lines(raw))
    assert headers["retry-after"] == "7" and headers["x-note"] == "a: b"
    assert "content-type" in headers and len(headers) == 3


def test_a_response_without_headers_has_none() -> None:
    assert _header_lines(b"HTTP/2 503\r\n\r\n") == []


@pytest.mark.parametrize("code, kind", [
    (CurlECode.OPERATION_TIMEDOUT, httpx.TimeoutException),
    (CurlECode.COULDNT_CONNECT, httpx.ConnectError),
    (CurlECode.COULDNT_RESOLVE_HOST, httpx.ConnectError),
    (CurlECode.SSL_CONNECT_ERROR, httpx.ConnectError),
    (CurlECode.PEER_FAILED_VERIFICATION, httpx.ConnectError),
])
def test_curl_failures_become_the_httpx_errors_firebase_admin_maps(code: CurlECode, kind: type[Exception]) -> None:
    assert type(_httpx_error(CurlError("failed", code=code), REQUEST)) is kind


def test_any_other_transfer_failure_is_a_transport_error() -> None:
    error = _httpx_error(CurlError("stream reset", code=CurlECode.HTTP2_STREAM), REQUEST)
    assert type(error) is httpx.TransportError and "stream reset" in str(error)
