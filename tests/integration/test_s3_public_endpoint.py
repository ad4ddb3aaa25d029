"""Pods and clients reach S3 at different addresses (`PARLEY_S3_PUBLIC_ENDPOINT`): the gateway
talks to the bucket at its endpoint and hands out URLs signed for the public one, against a real
SeaweedFS that checks the signature, whose host part is signed."""

from __future__ import annotations

import aiohttp
import pytest
from yarl import URL

from parley.adapters.s3_attachments import S3Attachments
from parley.config import S3Settings
from parley.ids import new_attachment_id
from tests.s3_server import S3Process, s3_server  # noqa: F401

pytestmark = pytest.mark.integration
BODY = b"bytes of a picture"


async def test_urls_are_signed_for_the_public_endpoint_and_work_only_there(
        s3_server: S3Process, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    public = s3_server.endpoint.replace("127.0.0.1", "localhost")  # same server, another host name
    monkeypatch.setenv("PARLEY_S3_PUBLIC_ENDPOINT", public)
    settings = S3Settings.from_env()
    assert settings is not None and settings.public_endpoint == public
    store = S3Attachments.from_settings(settings)
    key = new_attachment_id()

    put = await store.presign_put(key, "image/png", len(BODY), 60)
    assert put.url.startswith(public + "/")
    async with aiohttp.ClientSession() as http:
        internal = URL(put.url.replace(public, s3_server.endpoint), encoded=True)
        async with http.put(internal, data=BODY, headers=put.headers) as resp:
            assert resp.status == 403  # signed for the public host: refused at any other
        async with http.put(URL(put.url, encoded=True), data=BODY, headers=put.headers) as resp:
            assert resp.status == 200
        assert await store.size(key) == len(BODY)  # the gateway's own calls use the pods' endpoint
        get = await store.presign_get(key, "picture.png", "image/png", 60)
        assert get.url.startswith(public + "/")
        async with http.get(URL(get.url, encoded=True)) as resp:
            assert resp.status == 200 and await resp.read() == BODY
