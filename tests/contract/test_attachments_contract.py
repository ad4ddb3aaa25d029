"""The attachments contract: both adapters hand out URLs that work for exactly what was signed.

`local` is the embedded default (parley/adapters/local_blob_routes.py serving a directory, here on an in-process
HTTP server); `s3` is boto3 against a real SeaweedFS, which checks signatures and expiry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from parley.adapters.local_blob_routes import BlobRoutes
from gateway.rest import errors_as_json
from parley.adapters.local_attachments import LocalAttachments
from parley.adapters.s3_attachments import S3Attachments
from parley.ids import new_attachment_id
from parley.ports import Attachments, Presigned
from tests.s3_server import s3_server  # noqa: F401

BODY = b"\x89PNG not really, but bytes"


@dataclass
class Harness:
    store: Attachments
    base: str  # what the embedded gateway's relative URLs resolve against
    http: aiohttp.ClientSession

    def url(self, signed: Presigned | str) -> URL:
        raw = signed.url if isinstance(signed, Presigned) else signed
        return URL(self.base).join(URL(raw, encoded=True))

    async def put(self, url: Presigned | str, body: bytes, content_type: str) -> int:
        # The headers the URL was signed with, as a client must send them; aiohttp sets
        # Content-Length from the body, as any client does.
        signed = {k: v for k, v in url.headers.items() if k != "Content-Length"} if isinstance(url, Presigned) else {}
        async with self.http.put(self.url(url), data=body, headers={**signed, "Content-Type": content_type}) as resp:
            await resp.read()
            return resp.status

    async def get(self, url: Presigned | str) -> tuple[int, dict[str, str], bytes]:
        async with self.http.get(self.url(url)) as resp:
            return resp.status, dict(resp.headers), await resp.read()

    async def upload(self, key: str, body: bytes = BODY, mime: str = "image/png") -> None:
        signed = await self.store.presign_put(key, mime, len(body), 60)
        assert signed.method == "PUT" and signed.headers["Content-Type"] == mime
        assert await self.put(signed, body, mime) == 200


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.integration)])
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    async with aiohttp.ClientSession() as http:
        if request.param == "s3":
            s3 = request.getfixturevalue("s3_server")
            yield Harness(S3Attachments(s3.client(), s3.bucket), s3.endpoint, http)
            return
        local = LocalAttachments(tmp_path / "attachments", b"k" * 32)
        app = web.Application(middlewares=[errors_as_json])
        BlobRoutes(local).mount(app)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        try:
            yield Harness(local, str(server.make_url("/")), http)
        finally:
            await server.close()


def tamper(url: str, marker: str) -> str:
    """The URL with the character after `marker` changed."""
    at = url.index(marker) + len(marker)
    return url[:at] + ("0" if url[at] != "0" else "1") + url[at + 1:]


async def test_an_upload_url_then_a_download_url_round_trip_the_bytes(harness):
    key = new_attachment_id()
    assert await harness.store.size(key) is None
    await harness.upload(key)
    assert await harness.store.size(key) == len(BODY)
    signed = await harness.store.presign_get(key, "café plan.png", "image/png", 60)
    status, headers, body = await harness.get(signed)
    assert (status, body) == (200, BODY)
    assert headers["Content-Type"] == "image/png"
    assert headers["Content-Disposition"] == "attachment; filename*=UTF-8''caf%C3%A9%20plan.png"


async def test_a_changed_signature_or_key_is_refused(harness):
    key, other = new_attachment_id(), new_attachment_id()
    await harness.upload(key)
    await harness.upload(other)
    signed = (await harness.store.presign_get(key, "a.png", "image/png", 60)).url
    assert (await harness.get(signed))[0] == 200
    assert (await harness.get(tamper(signed, "ignature=")))[0] == 403
    # Another object under the same signature: signed for `key`, not for `other`.
    assert (await harness.get(signed.replace(key, other, 1)))[0] == 403
    put = (await harness.store.presign_put(new_attachment_id(), "image/png", len(BODY), 60)).url
    assert await harness.put(tamper(put, "ignature="), BODY, "image/png") == 403


async def test_an_upload_other_than_the_declared_one_is_refused_and_stores_nothing(harness):
    key = new_attachment_id()
    signed = await harness.store.presign_put(key, "image/png", len(BODY), 60)
    assert await harness.put(signed, BODY, "text/html") == 403
    assert await harness.put(signed, BODY + b"more", "image/png") == 403
    assert await harness.put(signed, BODY[:-1], "image/png") == 403
    assert await harness.store.size(key) is None
    assert await harness.put(signed, BODY, "image/png") == 200


async def test_an_object_is_written_once_the_upload_url_cannot_replace_it(harness):
    key = new_attachment_id()
    signed = await harness.store.presign_put(key, "image/png", len(BODY), 60)
    assert await harness.put(signed, BODY, "image/png") == 200
    other = bytes(reversed(BODY))  # the same declared type and size: all the URL checks
    assert await harness.put(signed, other, "image/png") in (409, 412)
    status, _, stored = await harness.get(await harness.store.presign_get(key, "a.png", "image/png", 60))
    assert (status, stored) == (200, BODY)


async def test_expired_urls_are_refused(harness):
    key = new_attachment_id()
    await harness.upload(key)
    get = await harness.store.presign_get(key, "a.png", "image/png", 1)
    put = await harness.store.presign_put(new_attachment_id(), "image/png", len(BODY), 1)
    await asyncio.sleep(2.5)  # SigV4 counts whole seconds from X-Amz-Date
    assert (await harness.get(get))[0] == 403
    assert await harness.put(put, BODY, "image/png") == 403


@pytest.mark.parametrize("harness", ["local"], indirect=True)
async def test_local_urls_are_refused_with_the_json_error_body_and_served_without_script(harness):
    key = new_attachment_id()
    await harness.upload(key)
    signed = (await harness.store.presign_get(key, "a.png", "image/png", 60)).url
    _, headers, _ = await harness.get(signed)
    assert headers["X-Content-Type-Options"] == "nosniff" and "sandbox" in headers["Content-Security-Policy"]
    for bad in (tamper(signed, "ignature="), signed.replace("type=image%2Fpng", "type=text%2Fhtml"),
                signed.split("?")[0]):
        status, headers, body = await harness.get(bad)
        assert status == 403 and headers["Content-Type"].startswith("application/json")
        assert b'"code":"forbidden"' in body.replace(b" ", b"")
    # A key that is no attachment id cannot reach outside the directory, signed or not.
    assert (await harness.get(signed.replace(key, "..%2F..%2Fetc%2Fpasswd", 1)))[0] in (403, 404)


async def test_the_server_reads_an_upload_and_stores_objects_of_its_own_beside_it(harness):
    key = new_attachment_id()
    await harness.upload(key)
    assert await harness.store.read(key) == BODY
    assert await harness.store.read(new_attachment_id()) is None
    thumb = key + "t96"
    await harness.store.put(thumb, b"first", "image/webp")
    await harness.store.put(thumb, b"webp bytes", "image/webp")  # made again: replaced whole
    assert await harness.store.read(thumb) == b"webp bytes"
    status, headers, body = await harness.get(await harness.store.presign_get(thumb, "t.webp", "image/webp", 60))
    assert (status, headers["Content-Type"], body) == (200, "image/webp", b"webp bytes")
