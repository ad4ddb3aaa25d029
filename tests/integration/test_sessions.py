"""How sessions end: short access tokens refreshed with rotating refresh tokens (a reused one
revokes its family), logout, logout everywhere, the list of my sessions with revoke, password
change, and live WebSocket sessions closed with 4003 when their token expires or is revoked, on
every gateway. Against an in-process `parley dev` app (settings of its own, no port) and, for the
gateways, `parley up`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from parley.adapters.redis_state import RedisPresence, connect_redis
from parley.app.embedded import build_app
from parley.config import SessionLifetimes, Settings
from parley.errors import Forbidden, ParleyError, Unauthorized
from parley.sdk import (
    Account, AppTransport, Client, change_password, list_sessions, login, logout, logout_everywhere, refresh,
    register, revoke_session,
)
from tests.conftest import ParleyProcess

pytestmark = pytest.mark.integration
BASE_URL = "http://parley.in-process"
PASSWORD = "correct horse"
#: Short enough to watch tokens expire; the hub's sweep runs every second.
SHORT_TTL_S = 2

Start = Callable[..., Awaitable[AppTransport]]


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Start]:
    """Starts an in-process app with the given settings (once per test)."""
    running: list[AppTransport] = []

    async def make(**settings: Any) -> AppTransport:
        transport = AppTransport(await build_app(Settings(data_dir=tmp_path / f"d{len(running)}", **settings)))
        await transport.start()
        running.append(transport)
        return transport

    yield make
    for transport in running:
        await transport.aclose()


async def call(transport: AppTransport, method: str, path: str, token: str | None = None,
               body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    sent = {"Content-Type": "application/json", **(headers or {})}
    if token:
        sent["Authorization"] = f"Bearer {token}"
    resp = await transport.request(method, BASE_URL + path, None if body is None else msgspec.json.encode(body), sent)
    return resp.status, msgspec.json.decode(resp.body) if resp.body else None


async def test_login_gives_a_short_access_token_and_a_refresh_token_that_rotates(start: Start):
    app = await start(token_ttl_s=900, sessions=SessionLifetimes(refresh_ttl_s=7 * 86400))
    alice = await register(BASE_URL, "alice", PASSWORD, transport=app)
    assert alice.refresh_token and alice.expires_at is not None and alice.refresh_expires_at is not None
    assert alice.expires_at - time.time() == pytest.approx(900, abs=5)
    assert alice.refresh_expires_at - time.time() == pytest.approx(7 * 86400, abs=5)
    again = await refresh(BASE_URL, alice, transport=app)
    assert (again.user_id, again.username) == (alice.user_id, "alice")
    assert again.refresh_token != alice.refresh_token
    assert (await call(app, "GET", "/v1/me/export", again.token))[0] == 200
    assert (await call(app, "GET", "/v1/me/export", alice.token))[0] == 200  # the old access token runs out itself


async def test_a_reused_refresh_token_revokes_its_family_and_closes_its_live_sessions(start: Start):
    app = await start()
    await register(BASE_URL, "alice", PASSWORD, transport=app)
    phone = await login(BASE_URL, "alice", PASSWORD, transport=app)
    laptop = await login(BASE_URL, "alice", PASSWORD, transport=app)
    stolen = phone  # a copy of the phone's credentials
    phone = await refresh(BASE_URL, phone, transport=app)  # the phone rotates
    live = await Client.connect(BASE_URL, phone.token, transport=app)
    other = await Client.connect(BASE_URL, laptop.token, transport=app)
    with pytest.raises(Unauthorized, match="reused"):
        await refresh(BASE_URL, stolen, transport=app)  # the thief replays the spent token
    assert await live.wait_closed() == 4003
    with pytest.raises(Unauthorized):
        await refresh(BASE_URL, phone, transport=app)  # the whole family is gone, the newest token too
    assert (await call(app, "GET", "/v1/me/export", phone.token))[0] == 401
    assert (await other.ping())["op"] == "ok"  # another login of the same user is untouched
    await other.close()


async def test_logout_ends_this_login_and_logout_everywhere_every_login(start: Start):
    app = await start()
    await register(BASE_URL, "alice", PASSWORD, transport=app)
    one, two, three = [await login(BASE_URL, "alice", PASSWORD, transport=app) for _ in range(3)]
    c1, c2, c3 = [await Client.connect(BASE_URL, a.token, transport=app) for a in (one, two, three)]
    await logout(BASE_URL, one.token, transport=app)
    assert await c1.wait_closed() == 4003
    with pytest.raises(Unauthorized):
        await refresh(BASE_URL, one, transport=app)
    assert (await c2.ping())["op"] == "ok"
    assert await logout_everywhere(BASE_URL, two.token, transport=app) == 3  # the registration's login too
    assert await c2.wait_closed() == 4003 and await c3.wait_closed() == 4003
    for gone in (two, three):
        with pytest.raises(Unauthorized):
            await refresh(BASE_URL, gone, transport=app)
        assert (await call(app, "GET", "/v1/me/export", gone.token))[0] == 401
    back = await login(BASE_URL, "alice", PASSWORD, transport=app)
    await (await Client.connect(BASE_URL, back.token, transport=app)).close()


async def test_my_sessions_are_listed_with_their_client_and_one_is_revoked_by_id(start: Start):
    app = await start()
    await register(BASE_URL, "alice", PASSWORD, transport=app)
    status, reply = await call(app, "POST", "/v1/auth/login", body={"username": "alice", "password": PASSWORD},
                               headers={"User-Agent": "ParleyPhone/2.1"})
    assert status == 200, reply
    phone_token = reply["token"]
    status, reply = await call(app, "POST", "/v1/auth/login",
                               body={"username": "alice", "password": PASSWORD, "device_name": "Work laptop"})
    laptop_token = reply["token"]
    bob = await register(BASE_URL, "bob", PASSWORD, transport=app)
    mine = await list_sessions(BASE_URL, laptop_token, transport=app)
    assert len(mine) == 3  # the registration's own login too
    current = [s for s in mine if s["current"]]
    assert [s["label"] for s in current] == ["Work laptop"]
    assert {"ParleyPhone/2.1", "Work laptop"} <= {s["label"] for s in mine}
    assert all(s["created_at"] <= s["last_used_at"] and s["expires_at"] > time.time() * 1000 for s in mine)
    phone = next(s for s in mine if s["label"] == "ParleyPhone/2.1")
    live = await Client.connect(BASE_URL, phone_token, transport=app)
    with pytest.raises(ParleyError) as foreign:
        await revoke_session(BASE_URL, bob.token, phone["id"], transport=app)  # not bob's
    assert foreign.value.http_status == 404
    await revoke_session(BASE_URL, laptop_token, phone["id"], transport=app)
    assert await live.wait_closed() == 4003
    assert [s["id"] for s in await list_sessions(BASE_URL, laptop_token, transport=app)].count(phone["id"]) == 0
    with pytest.raises(ParleyError) as again:
        await revoke_session(BASE_URL, laptop_token, phone["id"], transport=app)
    assert again.value.http_status == 404


async def test_a_password_change_checks_the_old_one_and_ends_every_other_login(start: Start):
    app = await start()
    await register(BASE_URL, "alice", PASSWORD, transport=app)
    here = await login(BASE_URL, "alice", PASSWORD, transport=app)
    elsewhere = await login(BASE_URL, "alice", PASSWORD, transport=app)
    stays = await Client.connect(BASE_URL, here.token, transport=app)
    ends = await Client.connect(BASE_URL, elsewhere.token, transport=app)
    with pytest.raises(Forbidden):
        await change_password(BASE_URL, here.token, "wrong horse", "battery staple", transport=app)
    assert await change_password(BASE_URL, here.token, PASSWORD, "battery staple", transport=app) == 2
    assert await ends.wait_closed() == 4003
    assert (await stays.ping())["op"] == "ok"
    assert (await call(app, "GET", "/v1/me/export", here.token))[0] == 200
    with pytest.raises(Unauthorized):
        await refresh(BASE_URL, elsewhere, transport=app)
    with pytest.raises(Unauthorized):
        await login(BASE_URL, "alice", PASSWORD, transport=app)
    await login(BASE_URL, "alice", "battery staple", transport=app)
    await stays.close()


async def test_password_changes_are_limited_like_logins(start: Start):
    app = await start()
    alice = await register(BASE_URL, "alice", PASSWORD, transport=app)
    codes = []
    for _ in range(12):
        status, _ = await call(app, "POST", "/v1/me/password", alice.token,
                               {"old_password": "wrong horse", "new_password": "battery staple"})
        codes.append(status)
    assert codes[0] == 403 and codes[-1] == 429
    status, _ = await call(app, "POST", "/v1/me/password", alice.token,
                           {"old_password": PASSWORD, "new_password": "battery staple"})
    assert status == 429  # over the limit, the right password is refused like a wrong one


async def test_a_live_session_whose_token_expires_is_told_and_closed_4003(start: Start):
    app = await start(token_ttl_s=SHORT_TTL_S)
    alice = await register(BASE_URL, "alice", PASSWORD, transport=app)
    live = await Client.connect(BASE_URL, alice.token, transport=app)  # a bare token: nothing to refresh with
    assert live.hello["expires_at"] == alice.expires_at
    started = time.monotonic()
    assert await live.wait_closed(timeout=SHORT_TTL_S + 3) == 4003
    assert time.monotonic() - started <= SHORT_TTL_S + 2
    told = await live.recv_raw(timeout=0.1)  # buffered before the close
    assert told["code"] == "unauthorized" and "expired" in told["message"]


async def test_a_live_session_refreshed_with_auth_outlives_its_first_token(start: Start):
    ttl = 2 * SHORT_TTL_S  # the second token must outlive the first by more than the sweep's second
    app = await start(token_ttl_s=ttl)
    alice = await register(BASE_URL, "alice", PASSWORD, transport=app)
    bob = await register(BASE_URL, "bob", PASSWORD, transport=app)
    live = await Client.connect(BASE_URL, alice.token, transport=app)
    fresh = await refresh(BASE_URL, alice, transport=app)
    with pytest.raises(Unauthorized):
        await live.request("auth", token=bob.token)  # another user's token: refused, the session stays
    with pytest.raises(Unauthorized):
        await live.request("auth", token="not a token")
    await asyncio.sleep(ttl / 2)
    newer = await refresh(BASE_URL, fresh, transport=app)
    ok = await live.request("auth", token=newer.token)
    assert ok["expires_at"] == newer.expires_at >= alice.expires_at + ttl / 2  # type: ignore[operator]
    await asyncio.sleep(alice.expires_at + 1.2 - time.time())  # type: ignore[operator]  # past the first expiry
    assert (await live.ping())["op"] == "ok"
    await live.close()


async def test_the_sdk_client_refreshes_before_its_token_expires_and_reconnects_with_the_newest(start: Start):
    app = await start(token_ttl_s=SHORT_TTL_S)
    alice = await register(BASE_URL, "alice", PASSWORD, transport=app)
    bob = await register(BASE_URL, "bob", PASSWORD, transport=app)
    async with await Client.connect(BASE_URL, alice, transport=app, reconnect=True) as a, \
            await Client.connect(BASE_URL, bob, transport=app) as b:
        conv = (await a.request("conv.create", kind="direct", members=[bob.user_id]))["conv"]["id"]
        await asyncio.sleep(3 * SHORT_TTL_S)
        await a.send(conv, "still here")
        assert (await b.next_event("message.new", conv=conv))["message"]["text"] == "still here"
        assert a.account.refresh_token != alice.refresh_token  # rotated: the app must keep the newest
        await a._conn.socket.close()  # type: ignore[union-attr]  # a dropped socket
        await a.send(conv, "after a reconnect")  # the first token expired long ago
        assert a.reconnects == 1


async def test_the_sdk_client_refreshes_an_expired_account_before_it_says_hello(start: Start):
    app = await start(token_ttl_s=SHORT_TTL_S)
    alice = await register(BASE_URL, "alice", PASSWORD, transport=app)
    await asyncio.sleep(SHORT_TTL_S + 0.5)  # kept since an earlier run
    with pytest.raises(Unauthorized):
        await Client.connect(BASE_URL, alice.token, transport=app)
    async with await Client.connect(BASE_URL, alice, transport=app) as a:
        assert (await a.ping())["op"] == "ok" and a.account.refresh_token != alice.refresh_token  # type: ignore[union-attr]


# ---- every gateway ----------------------------------------------------------------------------


async def gateway_of(server: ParleyProcess, user: str) -> str:
    """Which gateway of `parley up` holds the user's session (presence in Redis)."""
    redis = connect_redis(f"redis://{server.topology()['brokers']['redis']['address']}/0")
    try:
        for _ in range(50):
            located = await RedisPresence(redis).locate([user])
            if located:
                return next(iter(located))
            await asyncio.sleep(0.1)
    finally:
        await redis.aclose()
    raise AssertionError(f"{user} has no session on any gateway")


async def http_to_another_gateway(server: ParleyProcess, not_this: str) -> aiohttp.ClientSession:
    """A keep-alive HTTP connection that landed on the other gateway (they share the port)."""
    for _ in range(40):
        http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
        async with http.get(server.base_url + "/readyz") as resp:
            if (await resp.json())["id"] != not_this:
                return http
        await http.close()
    raise AssertionError("every connection reached the same gateway")


# Two gateways are `parley up`'s: the shared server of that mode only (`parley dev` has one).
@pytest.mark.parametrize("server", ["up"], indirect=True)
async def test_a_revocation_through_one_gateway_closes_a_session_held_on_the_other(server: ParleyProcess):
    name = f"rv{time.monotonic_ns() % 10**9}"
    await register(server.base_url, name, PASSWORD)
    target, revoker = [await login(server.base_url, name, PASSWORD) for _ in range(2)]
    live = await Client.connect(server.base_url, target.token)
    held_by = await gateway_of(server, target.user_id)
    http = await http_to_another_gateway(server, held_by)
    try:
        auth = {"Authorization": f"Bearer {revoker.token}"}
        async with http.get(server.base_url + "/v1/me/sessions", headers=auth) as resp:
            target_id = next(s["id"] for s in (await resp.json())["sessions"] if not s["current"])
        started = time.monotonic()
        async with http.delete(f"{server.base_url}/v1/me/sessions/{target_id}", headers=auth) as resp:
            assert resp.status == 200
    finally:
        await http.close()
    assert await live.wait_closed(timeout=5) == 4003
    assert time.monotonic() - started < 3
