"""`Client.close()` against a server that never answers the close handshake: it returns within
its close timeout and leaves no aiohttp response, connection or session behind (a
ResourceWarning when garbage-collected, which `filterwarnings=error` makes a flaky failure
wherever the collection happens to run)."""

from __future__ import annotations

import asyncio
import gc
import json
import warnings
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from parley.sdk import Client
from parley.sdk.transport import AiohttpTransport


async def deaf_after_hello(request: web.Request) -> web.WebSocketResponse:
    """Answers hello, then never reads again: a close frame sent to it gets no answer."""
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    hello = json.loads((await ws.receive()).data)
    await ws.send_str(json.dumps({"op": "ok", "rid": hello["rid"], "user_id": "u1", "heartbeat_s": 30}))
    await asyncio.sleep(3600)
    return ws


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/v1/ws", deaf_after_hello)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


@pytest.mark.parametrize("shared", [False, True], ids=["own-session", "shared-session"])
async def test_close_against_a_server_that_never_answers_the_close_leaks_nothing(base_url: str, shared: bool):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        http = aiohttp.ClientSession() if shared else None
        client = await Client.connect(base_url, "token", transport=AiohttpTransport(http) if http else None,
                                      heartbeat=False)
        async with asyncio.timeout(5):  # the client's own close timeout is 2 s
            await client.close()
        del client
        if http is not None:
            await http.close()
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
