"""Every gateway response tells browsers the same: run nothing from elsewhere, never in a frame,
never guess a type, send no Referer. Downloads keep their own stricter policy."""

from __future__ import annotations

import aiohttp
import pytest
import yarl

from parley.sdk import attachment, upload
from tests.integration.test_uploads import group

pytestmark = pytest.mark.integration

EXPECTED = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def policy(header: str) -> dict[str, str]:
    return {d.split()[0]: " ".join(d.split()[1:]) for d in header.split(";") if d.strip()}


async def test_every_kind_of_response_carries_the_security_headers(server, make_user):
    alice = await make_user()
    async with aiohttp.ClientSession() as http:
        for method, path, token in (("GET", "/", None), ("GET", "/static/app.js", None),
                                    ("GET", "/v1/client/capabilities", None), ("GET", "/healthz", None),
                                    ("GET", "/v1/nothing-here", None), ("GET", "/v1/me/export", alice.token),
                                    ("GET", "/v1/me/export", "bad token"), ("POST", "/v1/auth/login", None),
                                    ("GET", "/v1/ws", None)):
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            async with http.request(method, server.base_url + path, headers=headers) as resp:
                for name, value in EXPECTED.items():
                    assert resp.headers.get(name) == value, (method, path, resp.status, name)
                csp = policy(resp.headers["Content-Security-Policy"])
                assert csp["default-src"] == "'none'" and csp["frame-ancestors"] == "'none'", (path, csp)
                assert csp["script-src"] == "'self'" and "unsafe-inline" not in resp.headers["Content-Security-Policy"]


async def test_a_download_keeps_its_sandbox_policy(server, make_user):
    alice = await make_user()
    conv = await group(server.base_url, alice)
    att = await upload(server.base_url, alice.token, conv, "n.txt", "text/plain", b"note")
    url = (await attachment(server.base_url, alice.token, att["id"]))["url"]
    async with aiohttp.ClientSession() as http:
        async with http.get(yarl.URL(url, encoded=True)) as resp:
            assert resp.status == 200
            assert "sandbox" in resp.headers["Content-Security-Policy"]
            assert resp.headers["X-Frame-Options"] == "DENY"
