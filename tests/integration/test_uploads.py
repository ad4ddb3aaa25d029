"""Attachments end to end against a real `parley dev`: upload as a member, send, fetch as another
member; everyone else gets 404; limits and bad input get clear JSON errors. The shared server
keeps attachments in its data dir; one test runs the same path on S3 (SeaweedFS)."""

from __future__ import annotations

import time
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


async def declare_and_put(base_url: str, token: str, conv: str, data: bytes, name: str = "f.bin") -> dict:
    """POST /v1/uploads and PUT the bytes, without completing: the slot (id, upload_url, headers)."""
    status, slot = await rest("POST", base_url + "/v1/uploads", token,
                              json={"conv": conv, "name": name, "mime": "application/octet-stream", "size": len(data)})
    assert status == 201, slot
    assert await put_bytes(base_url, slot, data) == 200
    return slot


async def put_bytes(base_url: str, slot: dict, data: bytes) -> int:
    async with aiohttp.ClientSession() as http:
        url = yarl.URL(base_url).join(yarl.URL(slot["upload_url"], encoded=True))
        async with http.put(url, data=data, headers=slot["headers"]) as resp:
            return resp.status


async def test_an_attachment_is_immutable_once_uploaded_and_completes_once(server, make_user):
    alice, bob = await make_user(), await make_user()
    conv = await group(server.base_url, alice, bob)
    slot = await declare_and_put(server.base_url, alice.token, conv, b"the real invoice")
    done = server.base_url + f"/v1/uploads/{slot['id']}/complete"
    assert (await rest("POST", done, alice.token))[0] == 200
    status, again = await rest("POST", done, alice.token)
    assert (status, again["error"]["code"]) == (409, "conflict")
    async with await Client.connect(server.base_url, alice.token) as a:
        await a.send(conv, "invoice attached", attachments=[slot["id"]])
    # The upload URL still lives, but it cannot replace what members were sent.
    assert await put_bytes(server.base_url, slot, b"the fake invoice") in (409, 412)
    fetched = await attachment(server.base_url, bob.token, slot["id"])
    assert (await download(fetched["url"]))[2] == b"the real invoice"


async def test_download_grants_follow_membership_and_membership_bound_history(server, make_user):
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    conv = await group(server.base_url, alice, bob)
    full = await group(server.base_url, alice)
    async with await Client.connect(server.base_url, alice.token) as a:
        await a.request("conv.update", conv=full, history="full")
        early = await upload(server.base_url, alice.token, conv, "early.txt", "text/plain", b"before carol")
        early_full = await upload(server.base_url, alice.token, full, "early.txt", "text/plain", b"before carol")
        await a.send(conv, "early", attachments=[early["id"]])
        await a.send(full, "early", attachments=[early_full["id"]])
        for c in (conv, full):
            await a.request("conv.invite", conv=c, users=[carol.user_id])
        late = await upload(server.base_url, alice.token, conv, "late.txt", "text/plain", b"after carol")
        await a.send(conv, "late", attachments=[late["id"]])
        # History "joined": carol sees no message from before she joined, and no file either.
        with pytest.raises(ParleyError) as hidden:
            await attachment(server.base_url, carol.token, early["id"])
        assert (hidden.value.http_status, hidden.value.code) == (404, "not_found")
        assert (await attachment(server.base_url, carol.token, late["id"]))["name"] == "late.txt"
        assert (await attachment(server.base_url, carol.token, early_full["id"]))["name"] == "early.txt"
        assert (await attachment(server.base_url, bob.token, early["id"]))["name"] == "early.txt"
        await a.request("member.kick", conv=conv, user=bob.user_id)
    with pytest.raises(ParleyError) as kicked:
        await attachment(server.base_url, bob.token, late["id"])
    assert (kicked.value.http_status, kicked.value.code) == (404, "not_found")


async def test_download_urls_are_short_lived(server, make_user):
    alice = await make_user()
    conv = await group(server.base_url, alice)
    att = await upload(server.base_url, alice.token, conv, "n.txt", "text/plain", b"note")
    fetched = await attachment(server.base_url, alice.token, att["id"])
    # A URL already handed out works until it expires, whatever happens to membership meanwhile.
    assert fetched["expires_at"] - time.time() <= 61


async def test_file_names_lose_the_invisible_characters_that_disguise_them(server, make_user):
    alice = await make_user()
    conv = await group(server.base_url, alice)
    att = await upload(server.base_url, alice.token, conv, "invoice\u202efdp.exe", "application/octet-stream", b"MZ")
    assert att["name"] == "invoicefdp.exe"
    fetched = await attachment(server.base_url, alice.token, att["id"])
    async with aiohttp.ClientSession() as http:
        async with http.get(yarl.URL(fetched["url"], encoded=True)) as resp:
            assert resp.headers["Content-Disposition"] == "attachment; filename*=UTF-8''invoicefdp.exe"
    for name in ("\u202e\u2066", "a\x85b", ".."):
        status, body = await rest("POST", server.base_url + "/v1/uploads", alice.token,
                                  json={"conv": conv, "name": name, "mime": "text/plain", "size": 1})
        assert (status, body["error"]["code"]) == (400, "bad_request"), name


async def test_upload_declarations_are_rate_limited_per_user(fresh_server):
    srv = fresh_server(PARLEY_UPLOAD_BURST="3", PARLEY_UPLOAD_WINDOW_S="60")
    from parley.sdk import register
    alice, bob = await register(srv.base_url, "alice", "correct horse"), await register(srv.base_url, "bob", "correct horse")
    conv = await group(srv.base_url, alice)
    body = {"conv": conv, "name": "x.txt", "mime": "text/plain", "size": 1}
    statuses = [(await rest("POST", srv.base_url + "/v1/uploads", alice.token, json=body))[0] for _ in range(4)]
    assert statuses == [201, 201, 201, 429]
    own = await group(srv.base_url, bob)  # per user
    assert (await rest("POST", srv.base_url + "/v1/uploads", bob.token, json={**body, "conv": own}))[0] == 201
