"""Bad input gets a clear error (or the protocol's close code), and the session and the server
keep working afterwards."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from parley.errors import ParleyError
from parley.sdk import Client

pytestmark = pytest.mark.integration


async def raw_ws(base_url: str, http: aiohttp.ClientSession) -> aiohttp.ClientWebSocketResponse:
    return await http.ws_connect(base_url.replace("http", "ws") + "/v1/ws", autoping=True)


async def next_text(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> dict:
    msg = await ws.receive(timeout=timeout)
    assert msg.type is aiohttp.WSMsgType.TEXT, msg
    return json.loads(msg.data)


async def raw_session(base_url: str, http: aiohttp.ClientSession, token: str) -> aiohttp.ClientWebSocketResponse:
    """A raw WebSocket past its hello, for frames the SDK would never send."""
    ws = await raw_ws(base_url, http)
    await ws.send_str(json.dumps({"op": "hello", "rid": "h", "token": token}))
    assert (await next_text(ws))["op"] == "ok"
    return ws


async def test_malformed_frames_get_errors_and_the_session_survives(server, make_user):
    alice = await make_user()
    a = await Client.connect(server.base_url, alice.token)
    conv = (await a.request("conv.create", kind="group", members=[]))["conv"]["id"]
    cases = [
        ("not json at all", None, "bad_request"),
        ("[1, 2, 3]", None, "bad_request"),
        (json.dumps({"op": "ping"}), None, "bad_request"),  # no rid
        (json.dumps({"op": "warp", "rid": "r1"}), "r1", "bad_request"),  # unknown op
        (json.dumps({"op": "send", "rid": "r2", "conv": conv, "cmid": "x"}), "r2", "bad_request"),  # missing text
        (json.dumps({"op": "send", "rid": "r3", "conv": conv, "cmid": "x", "text": 5}), "r3", "bad_request"),
        (json.dumps({"op": "send", "rid": "r4", "conv": 7, "cmid": "x", "text": "t"}), "r4", "bad_request"),
        (json.dumps({"op": "send", "rid": "r5", "conv": conv, "cmid": "x", "text": "x" * 16385}), "r5", "too_large"),
        (json.dumps({"op": "send", "rid": "r6", "conv": conv, "cmid": "", "text": "t"}), "r6", "bad_request"),
        (json.dumps({"op": "react", "rid": "r7", "conv": conv, "seq": 1, "emoji": "x", "on": "yes"}), "r7", "bad_request"),
        (json.dumps({"op": "read", "rid": "r8", "conv": conv, "seq": -1}), "r8", "bad_request"),
        (json.dumps({"op": "hello", "rid": "r9", "token": alice.token}), "r9", "bad_request"),  # second hello
        (json.dumps({"op": "conv.create", "rid": "r10", "kind": "moon"}), "r10", "bad_request"),
        (json.dumps({"op": "sync", "rid": "r11", "since": {"c": "x"}}), "r11", "bad_request"),
    ]
    for raw, rid, code in cases:
        await a.send_raw(raw)
        reply = await a.recv_raw()
        while reply["op"] == "event":  # events of the conversation may interleave
            reply = await a.recv_raw()
        assert reply["op"] == "error", raw
        assert reply["code"] == code, (raw, reply)
        assert reply.get("rid") == rid, (raw, reply)
        assert reply["message"]
    # The session still works, and so does the server.
    assert (await a.send(conv, "still here"))["seq"] == 1
    await a.close()


async def test_text_at_the_limit_is_accepted_and_one_over_is_too_large(server, make_user):
    alice = await make_user()
    a = await Client.connect(server.base_url, alice.token)
    limits = a.hello["limits"]
    assert limits == {"max_frame_bytes": 65536, "max_text_chars": 16384, "history_max": 200}
    conv = (await a.request("conv.create", kind="group", members=[]))["conv"]["id"]
    assert (await a.send(conv, "é" * 16384))["seq"] == 1
    with pytest.raises(ParleyError) as err:
        await a.send(conv, "é" * 16385)
    assert err.value.code == "too_large"
    await a.close()


async def test_a_frame_over_max_frame_bytes_closes_1009_and_the_server_goes_on(server, make_user):
    alice = await make_user()
    async with aiohttp.ClientSession() as http:
        ws = await raw_session(server.base_url, http, alice.token)
        await ws.send_str(json.dumps({"op": "ping", "rid": "p", "pad": "x" * 70_000}))
        msg = await ws.receive(timeout=5)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == 1009
    a = await Client.connect(server.base_url, alice.token)
    assert (await a.ping())["op"] == "ok"
    await a.close()


async def test_a_bad_token_gets_unauthorized_then_close_4003(server):
    async with aiohttp.ClientSession() as http:
        ws = await raw_ws(server.base_url, http)
        await ws.send_str(json.dumps({"op": "hello", "rid": "h", "token": "not.a.jwt"}))
        reply = await next_text(ws)
        assert (reply["op"], reply["code"], reply["rid"]) == ("error", "unauthorized", "h")
        await ws.receive(timeout=5)
        assert ws.close_code == 4003


async def test_an_op_before_hello_closes_4001(server):
    async with aiohttp.ClientSession() as http:
        ws = await raw_ws(server.base_url, http)
        await ws.send_str(json.dumps({"op": "ping", "rid": "p"}))
        reply = await next_text(ws)
        assert reply["op"] == "error" and reply["code"] == "bad_request"
        await ws.receive(timeout=5)
        assert ws.close_code == 4001


async def test_no_hello_in_time_closes_4001(fresh_server):
    srv = fresh_server(PARLEY_HELLO_TIMEOUT_S="0.5")
    async with aiohttp.ClientSession() as http:
        ws = await raw_ws(srv.base_url, http)
        msg = await ws.receive(timeout=5)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == 4001


async def test_a_silent_session_is_closed_4002_and_a_pinging_one_is_not(fresh_server):
    srv = fresh_server(PARLEY_HEARTBEAT_S="1")
    from parley.sdk import register
    user = await register(srv.base_url, "idler", "correct horse")
    quiet = await Client.connect(srv.base_url, user.token, heartbeat=False)
    lively = await Client.connect(srv.base_url, user.token)
    assert await quiet.wait_closed(timeout=6) == 4002
    assert (await lively.ping())["op"] == "ok"
    await asyncio.gather(quiet.close(), lively.close())


async def test_binary_frames_are_refused_with_an_error(server, make_user):
    alice = await make_user()
    async with aiohttp.ClientSession() as http:
        ws = await raw_session(server.base_url, http, alice.token)
        await ws.send_bytes(b'{"op":"ping","rid":"p"}')
        reply = await next_text(ws)
        assert reply["op"] == "error" and reply["code"] == "bad_request"
        await ws.send_str(json.dumps({"op": "ping", "rid": "p2"}))
        assert (await next_text(ws))["rid"] == "p2"
        await ws.close()


async def test_rest_errors_are_json_with_the_protocol_codes(server):
    async with aiohttp.ClientSession() as http:
        async def post(path: str, body: object) -> tuple[int, dict]:
            data = body if isinstance(body, str) else json.dumps(body)
            async with http.post(server.base_url + path, data=data,
                                 headers={"Content-Type": "application/json"}) as resp:
                return resp.status, await resp.json()

        status, body = await post("/v1/auth/register", {"username": "Restful_1", "password": "long enough"})
        assert status == 201 and set(body) == {"user_id", "token"}
        status, body = await post("/v1/auth/register", {"username": "restful_1", "password": "long enough"})
        assert status == 409 and body["error"]["code"] == "conflict"  # names are lowercased
        for bad in ({"username": "ab", "password": "long enough"}, {"username": "x y z", "password": "long enough"},
                    {"username": "okname", "password": "short"}, {"username": 5, "password": "long enough"},
                    "not json", [1, 2]):
            status, body = await post("/v1/auth/register", bad)
            assert status == 400 and body["error"]["code"] == "bad_request", bad
        status, body = await post("/v1/auth/login", {"username": "restful_1", "password": "wrong password"})
        assert status == 401 and body["error"]["code"] == "unauthorized"
        status, body = await post("/v1/auth/login", {"username": "RESTFUL_1", "password": "long enough"})
        assert status == 200 and set(body) == {"user_id", "token"}
        async with http.get(server.base_url + "/v1/nothing-here") as resp:
            assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"


async def test_repeated_failed_logins_are_rate_limited_with_retry_after(server, make_user):
    user = await make_user()
    async with aiohttp.ClientSession() as http:
        statuses = []
        for _ in range(11):
            async with http.post(server.base_url + "/v1/auth/login",
                                 json={"username": "nobody_" + user.user_id, "password": "wrong password"}) as resp:
                statuses.append(resp.status)
                retry_after = resp.headers.get("Retry-After")
        assert statuses[:10] == [401] * 10 and statuses[10] == 429
        assert retry_after is not None and int(retry_after) >= 1
