"""Images end to end: completing an image upload makes its thumbnails, stored beside the object
(the data dir of `parley dev`, or S3 on SeaweedFS); `message.new` carries each file's name,
size, type, dimensions and thumbnail sizes; the attachment's answer signs the thumbnails' URLs.
Non-images and images that cannot be decoded get none."""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable

import pytest
from PIL import Image

from parley.sdk import Account, Client, attachment, upload
from tests.conftest import ParleyProcess
from tests.integration.test_uploads import download, group
from tests.s3_server import S3Process, s3_server  # noqa: F401

pytestmark = pytest.mark.integration

MakeUser = Callable[..., Awaitable[Account]]


def jpeg_with_exif(width: int, height: int) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "SpyCam"  # the camera's make: must not reach a thumbnail
    buf = io.BytesIO()
    Image.new("RGB", (width, height), "orange").save(buf, "JPEG", exif=exif.tobytes())
    return buf.getvalue()


async def image_round_trip(base_url: str, make_user: MakeUser) -> None:
    alice, bob = await make_user(base_url), await make_user(base_url)
    conv = await group(base_url, alice, bob)
    photo = jpeg_with_exif(1200, 800)
    img = await upload(base_url, alice.token, conv, "beach.jpg", "image/jpeg", photo)
    assert (img["width"], img["height"], img["thumbs"]) == (1200, 800, [96, 480])
    doc = await upload(base_url, alice.token, conv, "notes.txt", "text/plain", b"just text")
    assert (doc["width"], doc["height"], doc["thumbs"]) == (None, None, [])
    async with await Client.connect(base_url, bob.token) as b, await Client.connect(base_url, alice.token) as a:
        await a.send(conv, "look", attachments=[img["id"], doc["id"]])
        event = await b.next_event("message.new", conv=conv)
    assert event["files"] == [
        {"id": img["id"], "name": "beach.jpg", "size": len(photo), "mime": "image/jpeg", "width": 1200,
         "height": 800, "thumbs": [96, 480]},
        {"id": doc["id"], "name": "notes.txt", "size": 9, "mime": "text/plain"}]
    fetched = await attachment(base_url, bob.token, img["id"])
    assert sorted(fetched["thumbnails"]) == ["480", "96"]
    status, mime, body = await download(fetched["thumbnails"]["480"])
    assert (status, mime) == (200, "image/webp") and b"SpyCam" not in body
    with Image.open(io.BytesIO(body)) as thumb:
        assert thumb.size == (480, 320)
    assert (await attachment(base_url, bob.token, doc["id"]))["thumbnails"] == {}


async def test_an_image_upload_gets_thumbnails_that_reach_members_with_the_message(server, make_user):
    await image_round_trip(server.base_url, make_user)


async def test_a_file_that_claims_to_be_an_image_but_is_not_stays_a_plain_file(server, make_user):
    alice = await make_user()
    conv = await group(server.base_url, alice)
    fake = await upload(server.base_url, alice.token, conv, "x.png", "image/png", b"\x89PNG but nothing after")
    assert (fake["uploaded"], fake["thumbs"], fake["width"]) == (True, [], None)


@pytest.mark.slow
async def test_thumbnails_are_made_and_served_on_s3_too(fresh_server, make_user, s3_server: S3Process):
    proc: ParleyProcess = fresh_server(**s3_server.env())
    await image_round_trip(proc.base_url, make_user)
    keys = {o["Key"] for o in s3_server.client().list_objects_v2(Bucket=s3_server.bucket).get("Contents", [])}
    assert any(k.endswith("t96") for k in keys) and any(k.endswith("t480") for k in keys)
