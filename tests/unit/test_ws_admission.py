"""Who the gateway lets open a WebSocket (gateway/admission.py), against an in-process
`parley dev` app: the per-address cap on WebSockets before hello, and a draining gateway's
refusals (HTTP 503 before the upgrade, 4009 after it, `/readyz` not ready)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY

from gateway.admission import Admission
from parley.app.embedded import build_app
from parley.config import Settings
from parley.limits import Limits
from parley.sdk import register

UPGRADE = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13"}


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient]:
    app = await build_app(Settings(data_dir=tmp_path, limits=Limits(max_handshakes_per_ip=2, hello_timeout_s=30)))
    client = TestClient(TestServer(app))
    await client.start_server()
    yield client
    await client.close()


def refused_connects(status: int) -> float:
    return REGISTRY.get_sample_value("parley_gateway_connects_total", {"result": f"http_{status}"}) or 0.0


async def refused_upgrade(client: TestClient) -> tuple[int, dict[str, str], dict]:
    """An upgrade request answered without an upgrade: its status, headers and JSON body."""
    key = base64.b64encode(os.urandom(16)).decode()
    async with client.get("/v1/ws", headers={**UPGRADE, "Sec-WebSocket-Key": key}) as resp:
        return resp.status, dict(resp.headers), json.loads(await resp.read())


async def hello(ws: aiohttp.ClientWebSocketResponse, token: str) -> dict:
    await ws.send_str(json.dumps({"op": "hello", "rid": "h", "token": token}))
    msg = await ws.receive(timeout=5)
    assert msg.type is aiohttp.WSMsgType.TEXT, msg
    return json.loads(msg.data)


async def test_an_address_over_the_cap_of_websockets_before_hello_is_refused_429(client: TestClient):
    user = await register(str(client.make_url("")), "walker", "correct horse")
    first, second = await client.ws_connect("/v1/ws"), await client.ws_connect("/v1/ws")
    refused_before = refused_connects(429)
    status, headers, body = await refused_upgrade(client)
    assert status == 429 and body["error"]["code"] == "rate_limited" and int(headers["Retry-After"]) >= 1
    assert refused_connects(429) == refused_before + 1
    # Only handshakes count: once one says hello, its address may open another.
    assert (await hello(first, user.token))["op"] == "ok"
    third = await client.ws_connect("/v1/ws")
    assert (await hello(third, user.token))["op"] == "ok"
    for ws in (first, second, third):
        await ws.close()


async def test_a_draining_gateway_tells_handshakes_4009_and_refuses_upgrades_503(client: TestClient):
    user = await register(str(client.make_url("")), "leaver", "correct horse")
    waiting = await client.ws_connect("/v1/ws")  # upgraded, no hello yet
    live = await client.ws_connect("/v1/ws")
    assert (await hello(live, user.token))["op"] == "ok"

    # What SIGTERM runs once the listener is closed: the drain, until both have taken the close.
    drain = asyncio.create_task(client.app.shutdown())
    for ws in (waiting, live):
        msg = await ws.receive(timeout=5)
        assert (msg.type, msg.data, ws.close_code) == (aiohttp.WSMsgType.CLOSE, 4009, 4009)
    await drain
    status, headers, body = await refused_upgrade(client)
    assert status == 503 and body["error"]["code"] == "unavailable" and int(headers["Retry-After"]) >= 1
    resp = await client.get("/readyz")
    assert resp.status == 503 and (await resp.json())["checks"]["accepting"] is False


async def test_a_hello_wait_that_begins_after_the_drain_ends_at_once():
    admission = Admission(per_ip_max=0)
    admission.drain()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(30) as deadline:
            with admission.hello_wait(deadline):
                await asyncio.sleep(30)


def test_an_address_leaves_the_count_when_its_last_handshake_is_released():
    admission = Admission(per_ip_max=1)
    assert admission.admit("10.0.0.1") and not admission.admit("10.0.0.1") and admission.admit("10.0.0.2")
    admission.release("10.0.0.1")
    admission.release("10.0.0.2")
    assert not admission.pending and admission.admit("10.0.0.1")


def test_no_cap_when_the_limit_is_zero():
    admission = Admission(per_ip_max=0)
    assert all(admission.admit("127.0.0.1") for _ in range(1000))
