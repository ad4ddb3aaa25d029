"""Attachments end to end against a real `parley dev`: upload as a member, send, fetch as another
member; everyone else gets 404; limits and bad input get clear JSON errors. The shared server
keeps attachments in its data dir; one test runs the same path on S3 (SeaweedFS)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp
import pytest
import yarl

from parley.errors import ParleyError
from parley.sdk import Account, Client, attachment, upload
from tests.conftest import ParleyProcess
from tests.s3_server import S3Process, s3_server  # noqa: F401

pytestmark = pytest.mark.integration

MakeUser = Callable[..., Awaitable[Account]]
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


async def group(base_url: str, owner: Account, *others: Account) -> str:
    async with await Client.connect(base_url, owner.token) as c:
        created = await c.request("conv.create", kind="group", members=[u.user_id for u in others])
    return created["conv"]["id"]


async def download(url: str) -> tuple[int, str, bytes]:
    async with aiohttp.ClientSession() as http:
        async with http.get(yarl.URL(url, encoded=True)) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), await resp.read()


async def rest(method: str, url: str, token: str | None = None, **kw: object) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http:
        async with http.request(method, url, headers=headers, **kw) as resp:  # type: ignore[arg-type]
            return resp.status, await resp.json()


async def attachment_round_trip(base_url: str, make_user: MakeUser) -> None:
    """Upload, send with it, the other member sees it and downloads it; an outsider cannot."""
    alice, bob, eve = await make_user(base_url), await make_user(base_url), await make_user(base_url)
    conv = await group(base_url, alice, bob)
    att = await upload(base_url, alice.token, conv, "holiday.png", "image/png", PNG)
    assert (att["conv"], att["uploader"], att["size"], att["uploaded"]) == (conv, alice.user_id, len(PNG), True)
    async with await Client.connect(base_url, bob.token) as b, await Client.connect(base_url, alice.token) as a:
        ack = await a.send(conv, "", attachments=[att["id"]])  # attachments alone are a message
        msg = (await b.next_event("message.new", conv=conv))["message"]
    assert (msg["seq"], msg["attachments"], msg["text"]) == (ack["seq"], [att["id"]], "")
    fetched = await attachment(base_url, bob.token, att["id"])
    assert (fetched["name"], fetched["mime"], fetched["size"]) == ("holiday.png", "image/png", len(PNG))
    assert await download(fetched["url"]) == (200, "image/png", PNG)
    with pytest.raises(ParleyError) as outsider:
        await attachment(base_url, eve.token, att["id"])
    with pytest.raises(ParleyError) as unknown:
        await attachment(base_url, eve.token, "a" + "x" * 16)
    # An outsider cannot tell an attachment that exists from one that does not.
    assert (outsider.value.http_status, outsider.value.code, outsider.value.message) == \
        (unknown.value.http_status, unknown.value.code, unknown.value.message) == (404, "not_found", "no such attachment")


async def test_a_member_uploads_sends_and_another_member_fetches_it(server, make_user):
    await attachment_round_trip(server.base_url, make_user)


@pytest.mark.slow
async def test_the_same_path_works_with_attachments_on_s3(fresh_server, make_user, s3_server: S3Process):
    proc: ParleyProcess = fresh_server(**s3_server.env())
    await attachment_round_trip(proc.base_url, make_user)
    # The bytes went to the bucket, not to the data dir.
    assert not (proc.data_dir / "attachments").exists()
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=s3_server.bucket).get("Contents", [])]
    assert keys


async def test_send_takes_only_the_senders_own_completed_uploads_of_that_conversation(server, make_user):
    alice, bob = await make_user(), await make_user()
    conv, other = await group(server.base_url, alice, bob), await group(server.base_url, alice, bob)
    elsewhere = await upload(server.base_url, alice.token, other, "a.txt", "text/plain", b"other conv")
    bobs = await upload(server.base_url, bob.token, conv, "b.txt", "text/plain", b"bob's")
    _, declared = await rest("POST", server.base_url + "/v1/uploads", alice.token,
                             json={"conv": conv, "name": "c.txt", "mime": "text/plain", "size": 3})
    async with await Client.connect(server.base_url, alice.token) as a:
        for ids, code in (([elsewhere["id"]], "not_found"), ([bobs["id"]], "not_found"),
                          (["anything"], "not_found"), ([declared["id"]], "conflict")):
            with pytest.raises(ParleyError) as err:
                await a.send(conv, "look", attachments=ids)
            assert err.value.code == code, ids
        with pytest.raises(ParleyError) as err:
            await a.send(conv, "many", attachments=[f"a{i}" for i in range(11)])
        assert err.value.code == "bad_request"
        assert (await a.request("history", conv=conv))["messages"] == []  # nothing refused was stored


async def test_limits_and_bad_declarations_get_clear_json_errors(server, make_user):
    alice, eve = await make_user(), await make_user()
    conv = await group(server.base_url, alice)
    url = server.base_url + "/v1/uploads"
    caps = (await rest("GET", server.base_url + "/v1/client/capabilities"))[1]
    assert caps["features"]["attachments"] is True
    limits = caps["uploads"]
    assert limits["max_bytes"] == 25 * 1024 * 1024 and limits["max_per_message"] == 10
    good = {"conv": conv, "name": "x.png", "mime": "image/png", "size": 10}
    cases = [
        ({**good, "size": limits["max_bytes"] + 1}, 413, "too_large"),
        ({**good, "mime": "text/html"}, 415, "bad_request"),
        ({**good, "mime": "image/svg+xml"}, 415, "bad_request"),
        ({**good, "mime": "image/png\r\nX-Evil: 1"}, 400, "bad_request"),
        ({**good, "name": "../../etc/passwd"}, 400, "bad_request"),
        ({**good, "size": 0}, 400, "bad_request"),
        ({k: v for k, v in good.items() if k != "mime"}, 400, "bad_request"),
    ]
    for body, status, code in cases:
        got = await rest("POST", url, alice.token, json=body)
        assert (got[0], got[1]["error"]["code"]) == (status, code), body
        assert got[1]["error"]["message"]
    # A non-member of a private conversation learns nothing about it.
    assert (await rest("POST", url, eve.token, json=good))[0] == 404
    # Completing before the bytes arrived is a conflict; someone else's upload is not found.
    _, slot = await rest("POST", url, alice.token, json=good)
    done = server.base_url + f"/v1/uploads/{slot['id']}/complete"
    status, body = await rest("POST", done, alice.token)
    assert (status, body["error"]["code"]) == (409, "conflict")
    assert (await rest("POST", done, eve.token))[0] == 404


async def test_every_attachment_endpoint_needs_a_valid_token(server, make_user):
    alice = await make_user()
    conv = await group(server.base_url, alice)
    att = await upload(server.base_url, alice.token, conv, "n.txt", "text/plain", b"note")
    for method, path in (("POST", "/v1/uploads"), ("POST", f"/v1/uploads/{att['id']}/complete"),
                         ("GET", f"/v1/attachments/{att['id']}")):
        for token in (None, "not-a-jwt", alice.token[:-2] + "xx"):
            status, body = await rest(method, server.base_url + path, token,
                                      json={"conv": conv, "name": "a", "mime": "text/plain", "size": 1})
            assert (status, body["error"]["code"]) == (401, "unauthorized"), (method, path, token)


async def test_an_upload_far_larger_than_a_frame_streams_through_the_embedded_gateway(server, make_user):
    alice = await make_user()
    conv = await group(server.base_url, alice)
    data = bytes(range(256)) * (3 * 4096)  # 3 MiB; REST bodies are capped at max_frame_bytes
    att = await upload(server.base_url, alice.token, conv, "dump.bin", "application/octet-stream", data)
    fetched = await attachment(server.base_url, alice.token, att["id"])
    assert await download(fetched["url"]) == (200, "application/octet-stream", data)
