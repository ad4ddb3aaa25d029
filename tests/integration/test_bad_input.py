"""Bad input gets a clear error (or the protocol's close code), and the session and the server
keep working afterwards."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from parley.errors import ParleyError
from parley.sdk import Client, login

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


@pytest.mark.parametrize("token", ["not.a.jwt", ""])  # empty is a bad token too, not a malformed frame
async def test_a_bad_token_gets_unauthorized_then_close_4003(server, token):
    async with aiohttp.ClientSession() as http:
        ws = await raw_ws(server.base_url, http)
        await ws.send_str(json.dumps({"op": "hello", "rid": "h", "token": token}))
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


#: What register and login answer: an access token and the refresh token of the new login.
TOKEN_PAIR = {"user_id", "token", "expires_at", "refresh_token", "refresh_expires_at"}


async def test_rest_errors_are_json_with_the_protocol_codes(server):
    async with aiohttp.ClientSession() as http:
        async def post(path: str, body: object) -> tuple[int, dict]:
            data = body if isinstance(body, str) else json.dumps(body)
            async with http.post(server.base_url + path, data=data,
                                 headers={"Content-Type": "application/json"}) as resp:
                return resp.status, await resp.json()

        status, body = await post("/v1/auth/register", {"username": "Restful_1", "password": "long enough"})
        assert status == 201 and set(body) == TOKEN_PAIR
        status, body = await post("/v1/auth/register", {"username": "restful_1", "password": "long enough"})
        assert status == 409 and body["error"]["code"] == "conflict"  # names are lowercased
        for bad in ({"username": "ab", "password": "long enough"}, {"username": "x y z", "password": "long enough"},
                    {"username": "okname", "password": "short"}, {"username": 5, "password": "long enough"},
                    {"username": "deleted-u1234", "password": "long enough"},  # names the server gives itself
                    {"username": "Guest-0a1b2c3d4e", "password": "long enough"},
                    "not json", [1, 2]):
            status, body = await post("/v1/auth/register", bad)
            assert status == 400 and body["error"]["code"] == "bad_request", bad
        status, body = await post("/v1/auth/login", {"username": "restful_1", "password": "wrong password"})
        assert status == 401 and body["error"]["code"] == "unauthorized"
        status, body = await post("/v1/auth/login", {"username": "RESTFUL_1", "password": "long enough"})
        assert status == 200 and set(body) == TOKEN_PAIR
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


async def login_status(http: aiohttp.ClientSession, base_url: str, username: str, password: str) -> int:
    async with http.post(base_url + "/v1/auth/login", json={"username": username, "password": password}) as resp:
        return resp.status


async def test_while_a_username_is_locked_out_even_the_right_password_is_refused(fresh_server):
    srv = fresh_server(PARLEY_IP_AUTH_BURST="0")  # the per-username limit alone
    from parley.sdk import register
    victim = await register(srv.base_url, "victim", "correct horse")
    regular = await register(srv.base_url, "regular", "correct horse")
    async with aiohttp.ClientSession() as http:
        guesses = [await login_status(http, srv.base_url, victim.username, f"guess {n}") for n in range(12)]
        assert guesses == [401] * 10 + [429] * 2
        # Refused before the hash is checked: the right password does not get through either.
        assert await login_status(http, srv.base_url, victim.username, "correct horse") == 429
        # Someone who logs in normally is never locked out: each success starts the count again.
        assert [await login_status(http, srv.base_url, regular.username, "correct horse")
                for _ in range(15)] == [200] * 15
        for _ in range(9):  # a few typos between successes do not add up either
            assert await login_status(http, srv.base_url, regular.username, "typo") == 401
        assert await login_status(http, srv.base_url, regular.username, "correct horse") == 200
        assert await login_status(http, srv.base_url, regular.username, "typo") == 401
        # A name no account can have is refused at once: nothing hashed, nothing counted (nor kept).
        assert [await login_status(http, srv.base_url, "x" * 10_000 + str(n), "pw") for n in range(12)] == [401] * 12
        assert await login_status(http, srv.base_url, regular.username, "p" * 10_000) == 401


def new_log(server, since: int) -> str:
    """What the server logged after `since` characters of its log."""
    return server.log()[since:]


DEEP_FRAME = '{"op":"ping","rid":"deep","x":' + "[" * 1000 + "]" * 1000 + "}"


async def test_a_frame_nested_1000_deep_gets_bad_request_and_the_session_goes_on(server, make_user):
    alice = await make_user()
    before = len(server.log())
    async with aiohttp.ClientSession() as http:
        ws = await raw_session(server.base_url, http, alice.token)
        await ws.send_str(DEEP_FRAME)
        reply = await next_text(ws)
        assert (reply["op"], reply["code"]) == ("error", "bad_request")
        # A lone surrogate escape is not JSON msgspec reads; the rid is readable, so it is echoed.
        await ws.send_str(r'{"op":"ping","rid":"lone","x":"\ud800"}')
        reply = await next_text(ws)
        assert (reply["op"], reply["code"], reply.get("rid")) == ("error", "bad_request", "lone")
        await ws.send_str(json.dumps({"op": "ping", "rid": "p"}))
        assert (await next_text(ws))["rid"] == "p"
        await ws.close()
    await asyncio.sleep(0.2)
    assert "Traceback" not in new_log(server, before)


async def test_a_frame_nested_1000_deep_before_hello_gets_bad_request_then_4001(server):
    before = len(server.log())
    async with aiohttp.ClientSession() as http:
        ws = await raw_ws(server.base_url, http)
        await ws.send_str(DEEP_FRAME)
        reply = await next_text(ws)
        assert (reply["op"], reply["code"]) == ("error", "bad_request")
        await ws.receive(timeout=5)
        assert ws.close_code == 4001
    await asyncio.sleep(0.2)
    assert "Traceback" not in new_log(server, before)


def raw_http(base_url: str, request: bytes) -> bytes:
    """Send bytes no HTTP client library would, and read the answer until the server closes."""
    import socket
    from urllib.parse import urlsplit

    where = urlsplit(base_url)
    with socket.create_connection((where.hostname, where.port), timeout=5) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


async def test_requests_aiohttp_cannot_parse_get_400_and_leave_no_traceback(server):
    before = len(server.log())
    async with aiohttp.ClientSession() as http:
        async with http.get(server.base_url + "/v1/client/capabilities", headers={"X-Big": "a" * 9000}) as resp:
            assert resp.status == 400
    bad_url = raw_http(server.base_url, b"GET /v1/blobs/a?signature=\xed\xa0\x80 HTTP/1.1\r\nHost: x\r\n"
                                        b"Connection: close\r\n\r\n")
    assert bad_url.startswith(b"HTTP/1.1 400") or bad_url.startswith(b"HTTP/1.0 400"), bad_url[:100]
    await asyncio.sleep(0.2)
    assert "Traceback" not in new_log(server, before)


async def test_bodies_and_headers_that_are_not_what_they_claim_get_4xx(server, make_user):
    alice = await make_user()
    before = len(server.log())
    async with aiohttp.ClientSession() as http:
        # A charset nobody has: the body is JSON in UTF-8 all the same.
        async with http.post(server.base_url + "/v1/auth/login", data=b'{"username":"x","password":"y"}',
                             headers={"Content-Type": "application/json; charset=no-such-charset"}) as resp:
            assert resp.status == 401
    # A token that is not ASCII (a header's raw bytes) is no token.
    answer = raw_http(server.base_url, b"GET /v1/me/export HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe."
                                       b"\xed\xa0\x80\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 401"), answer[:100]
    assert (await login(server.base_url, alice.username, "correct horse")).user_id == alice.user_id
    await asyncio.sleep(0.2)
    assert "Traceback" not in new_log(server, before)


async def test_sessions_past_the_per_user_cap_are_refused_with_4029_until_one_ends(fresh_server):
    srv = fresh_server(PARLEY_MAX_SESSIONS_PER_USER="2")
    from parley.sdk import register
    user = await register(srv.base_url, "many", "correct horse")
    first = await Client.connect(srv.base_url, user.token)
    second = await Client.connect(srv.base_url, user.token)
    async with aiohttp.ClientSession() as http:
        ws = await raw_ws(srv.base_url, http)
        await ws.send_str(json.dumps({"op": "hello", "rid": "h", "token": user.token}))
        reply = await next_text(ws)
        assert (reply["op"], reply["code"], reply["rid"]) == ("error", "rate_limited", "h")
        assert reply["retry_after_ms"] > 0 and "2" in reply["message"]
        await ws.receive(timeout=5)
        assert ws.close_code == 4029
    other = await register(srv.base_url, "someone", "correct horse")  # the cap is per user
    await (await Client.connect(srv.base_url, other.token)).close()
    await first.close()
    await asyncio.sleep(0.2)
    third = await Client.connect(srv.base_url, user.token)
    assert (await third.ping())["op"] == "ok"
    await asyncio.gather(second.close(), third.close())


def never_reading_session(base_url: str, token: str) -> "socket.socket":
    """A WebSocket session that says hello and then never reads: a tiny receive buffer, raw frames."""
    import base64
    import os
    import socket
    from urllib.parse import urlsplit

    where = urlsplit(base_url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((where.hostname, where.port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(f"GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    payload = json.dumps({"op": "hello", "rid": "h", "token": token}).encode()
    assert len(payload) < 65536
    mask = os.urandom(4)
    length = bytes([0x80 | len(payload)]) if len(payload) < 126 else bytes([0x80 | 126]) + len(payload).to_bytes(2, "big")
    sock.sendall(b"\x81" + length + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    return sock


@pytest.mark.slow
async def test_a_session_that_stops_reading_is_cut_and_gives_its_place_back(fresh_server):
    srv = fresh_server(PARLEY_SEND_BURST="2000", PARLEY_SEND_QUEUE_MAX_BYTES="65536",
                       PARLEY_MAX_SESSIONS_PER_USER="1")
    from parley.sdk import register
    flooder, sloth = await register(srv.base_url, "flooder", "correct horse"), await register(srv.base_url, "sloth", "correct horse")
    sock = never_reading_session(srv.base_url, sloth.token)
    async with await Client.connect(srv.base_url, flooder.token) as f:
        conv = (await f.request("conv.create", kind="group", members=[sloth.user_id]))["conv"]["id"]
        for _ in range(600):  # ~10 MB: more than the socket buffers, the queue and its bound hold
            await f.send(conv, "x" * 16_000)
    # Its queue overflowed; the close cannot reach a peer that does not read, so it is cut.
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        try:
            back = await Client.connect(srv.base_url, sloth.token)
            break
        except ParleyError as refused:  # its place is still held
            assert refused.code == "rate_limited"
            assert asyncio.get_running_loop().time() < deadline, "the stuck session was never cut"
            await asyncio.sleep(1)
    assert (await back.ping())["op"] == "ok"
    await back.close()
    sock.close()
