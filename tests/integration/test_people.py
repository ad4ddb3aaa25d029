"""People end to end on `parley dev` (and `up`): profiles and avatars, public profiles one at a
time and in batches, `user.updated` to whoever shares a conversation, the directory (prefix
search, discoverability, blocks hidden both ways, rate limit)."""

from __future__ import annotations

import io
from typing import Any

import aiohttp
import pytest
import yarl
from PIL import Image

from parley.sdk import Account, Client, register
from tests.integration.test_admin import set_policy, staff

pytestmark = pytest.mark.integration


async def call(base_url: str, method: str, path: str, token: str | None = None, **kw: Any) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    headers.update(kw.pop("headers", {}))
    async with aiohttp.ClientSession() as http:
        async with http.request(method, base_url + path, headers=headers, allow_redirects=False, **kw) as resp:
            body = await resp.read()
            if resp.content_type == "application/json":
                return resp.status, await resp.json()
            return resp.status, {"location": resp.headers.get("Location"), "body": body}


def png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), "teal").save(buf, "PNG")
    return buf.getvalue()


async def test_a_profile_is_edited_and_shown_to_others_by_id_and_in_batches(server, make_user):
    alice, bob = await make_user(), await make_user()
    status, mine = await call(server.base_url, "GET", "/v1/me/profile", alice.token)
    assert status == 200 and mine == {"id": alice.user_id, "username": alice.username, "display_name": None,
                                      "avatar": None, "status_text": None, "discoverable": True}
    status, mine = await call(server.base_url, "PATCH", "/v1/me/profile", alice.token,
                              json={"display_name": "  Alice   Liddell ", "status_text": "in Wonderland"})
    assert status == 200 and (mine["display_name"], mine["status_text"]) == ("Alice Liddell", "in Wonderland")
    status, seen = await call(server.base_url, "GET", f"/v1/users/{alice.user_id}", bob.token)
    assert status == 200 and seen == {"id": alice.user_id, "username": alice.username,
                                      "display_name": "Alice Liddell", "avatar": None, "status_text": "in Wonderland"}
    status, batch = await call(server.base_url, "GET", f"/v1/users?ids={bob.user_id},nobody,{alice.user_id}",
                               bob.token)
    assert status == 200 and [p["id"] for p in batch["profiles"]] == [bob.user_id, alice.user_id]
    assert (await call(server.base_url, "GET", "/v1/users/nobody", bob.token))[0] == 404
    many = ",".join(f"u{i}" for i in range(101))
    assert (await call(server.base_url, "GET", f"/v1/users?ids={many}", bob.token))[0] == 400
    # Like the admin API: a field of the wrong type or name is 422 naming it; a body that changes
    # nothing, or text with control or format characters, is 400.
    for bad, code in (({}, 400), ({"display_name": 5}, 422), ({"nickname": "x"}, 422),
                      ({"display_name": "a\u202eb"}, 400), ({"status_text": "x" * 141}, 422)):
        assert (await call(server.base_url, "PATCH", "/v1/me/profile", alice.token, json=bad))[0] == code, bad
    assert (await call(server.base_url, "GET", "/v1/me/profile"))[0] == 401


async def test_a_profile_change_reaches_everyone_who_shares_a_conversation_and_no_one_else(server, make_user):
    alice, bob, carol, dave = await make_user(), await make_user(), await make_user(), await make_user()
    async with await Client.connect(server.base_url, alice.token) as a:
        await a.request("conv.create", kind="direct", members=[bob.user_id])
        await a.request("conv.create", kind="group", members=[carol.user_id])
    async with await Client.connect(server.base_url, bob.token) as b, \
            await Client.connect(server.base_url, carol.token) as c, \
            await Client.connect(server.base_url, dave.token) as d:
        await call(server.base_url, "PATCH", "/v1/me/profile", alice.token, json={"display_name": "Al"})
        for client in (b, c):
            event = await client.next_event("user.updated", timeout=5)
            assert event["user"]["id"] == alice.user_id and event["user"]["display_name"] == "Al"
            assert "discoverable" not in event["user"]  # a setting only its owner sees
        with pytest.raises(TimeoutError):
            await d.next_event("user.updated", timeout=0.5)


async def test_an_avatar_is_thumbnailed_served_by_version_and_removed(server, make_user):
    alice, bob = await make_user(), await make_user()
    status, mine = await call(server.base_url, "PUT", "/v1/me/avatar", alice.token, data=png(300, 200),
                              headers={"Content-Type": "image/png"})
    assert status == 200 and len(mine["avatar"]) == 16
    version = mine["avatar"]
    for size, expected in (("96", (96, 64)), ("480", (300, 200))):  # never upscaled; every size exists
        status, redirect = await call(server.base_url, "GET", f"/v1/avatars/{version}/{size}")  # no token needed
        assert status == 302
        async with aiohttp.ClientSession() as http:
            target = yarl.URL(server.base_url).join(yarl.URL(redirect["location"], encoded=True))
            async with http.get(target) as resp:
                assert (resp.status, resp.content_type) == (200, "image/webp")
                with Image.open(io.BytesIO(await resp.read())) as img:
                    assert img.size == expected
    assert (await call(server.base_url, "GET", f"/v1/avatars/{version}/100"))[0] == 404
    status, seen = await call(server.base_url, "GET", f"/v1/users/{alice.user_id}", bob.token)
    assert seen["avatar"] == version
    assert (await call(server.base_url, "PUT", "/v1/me/avatar", alice.token, data=b"%PDF",
                       headers={"Content-Type": "application/pdf"}))[0] == 415
    assert (await call(server.base_url, "PUT", "/v1/me/avatar", alice.token, data=b"not a png",
                       headers={"Content-Type": "image/png"}))[0] == 400
    status, mine = await call(server.base_url, "PATCH", "/v1/me/profile", alice.token, json={"avatar": None})
    assert status == 200 and mine["avatar"] is None
    assert (await call(server.base_url, "PATCH", "/v1/me/profile", alice.token, json={"avatar": "x"}))[0] == 422


async def search(base_url: str, who: Account, q: str) -> list[str]:
    status, found = await call(base_url, "GET", f"/v1/users?q={q}", who.token)
    assert status == 200, found
    return [u["id"] for u in found["users"]]


async def test_the_directory_finds_people_by_name_prefix_respecting_discoverability_and_blocks(server, make_user):
    seeker, target, shy = await make_user(), await make_user(), await make_user()
    # A display name unique to this test run, so the shared server's other users do not match.
    unique = "Zq" + target.user_id[-6:]
    await call(server.base_url, "PATCH", "/v1/me/profile", target.token, json={"display_name": f"{unique} Öhm"})
    await call(server.base_url, "PATCH", "/v1/me/profile", shy.token,
               json={"display_name": f"{unique} Shy", "discoverable": False})
    assert await search(server.base_url, seeker, unique.lower()) == [target.user_id]
    assert target.user_id in await search(server.base_url, seeker, target.username[:-1])  # a username prefix
    assert shy.user_id not in await search(server.base_url, seeker, shy.username)
    async with await Client.connect(server.base_url, target.token) as t:
        await t.request("user.block", user=seeker.user_id)
    # Hidden both ways, at once.
    assert await search(server.base_url, seeker, unique.lower()) == []
    assert seeker.user_id not in await search(server.base_url, target, seeker.username)
    for bad in ("a", "x" * 65):
        assert (await call(server.base_url, "GET", f"/v1/users?q={bad}", seeker.token))[0] == 400
    assert (await call(server.base_url, "GET", "/v1/users", seeker.token))[0] == 400


async def test_directory_searches_are_rate_limited_and_guests_cannot_search(fresh_server):
    proc = fresh_server(PARLEY_DIRECTORY_BURST="3", PARLEY_DIRECTORY_WINDOW_S="60")
    user = await register(proc.base_url, "searcher", "correct horse")
    statuses = [(await call(proc.base_url, "GET", "/v1/users?q=se", user.token))[0] for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    await set_policy(proc, await staff(proc, "admin"), guests=True)
    status, guest = await call(proc.base_url, "POST", "/v1/auth/guest")
    assert status == 201, guest
    status, refused = await call(proc.base_url, "GET", "/v1/users?q=se", guest["token"])
    assert (status, refused["error"]["code"]) == (403, "forbidden")
    # A guest still sees the people of its conversations by id.
    assert (await call(proc.base_url, "GET", f"/v1/users/{user.user_id}", guest["token"]))[0] == 200
