"""The gateway role as an aiohttp application: WebSocket sessions, REST (accounts, uploads),
health, web client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from delivery.fanout import Fanout
from gateway.hub import Hub
from gateway.reads import Reads
from gateway.rest import AuthRoutes, add_routes, errors_as_json
from gateway.uploads import UploadRoutes
from gateway.ws import WsEndpoint
from parley.auth import Passwords, Tokens
from parley.limits import Limits
from parley.ports import Attachments, LogProducer, Store
from parley.ratelimit import Limiter
from parley.records import Command

#: How long shutdown waits for sessions to flush their queues after being told 4009.
DRAIN_TIMEOUT_S = 5.0
#: Failed logins per username before `429`: against password guessing.
LOGIN_FAILURES, LOGIN_FAILURE_WINDOW_S = 10, 300


def gateway_app(*, hub: Hub, store: Store, tokens: Tokens, passwords: Passwords,
                commands: LogProducer[Command], fanout: Fanout, attachments: Attachments, limits: Limits,
                ready: Callable[[], Awaitable[dict[str, bool]]]) -> web.Application:
    app = web.Application(middlewares=[errors_as_json], client_max_size=limits.max_frame_bytes)
    ws = WsEndpoint(hub, Reads(store), tokens, commands, fanout, limits,
                    Limiter("send", limits.send_burst, limits.send_window_s))
    app.router.add_get("/v1/ws", ws.handle)
    auth = AuthRoutes(store, tokens, passwords, Limiter("login failure", LOGIN_FAILURES, LOGIN_FAILURE_WINDOW_S))
    add_routes(app, auth, limits, ready)
    UploadRoutes(store, attachments, tokens, limits).mount(app)

    async def sweeper(_: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(hub.sweep_forever(), name="sweeper")
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def going_away(_: web.Application) -> None:
        """SIGTERM: every session is told 4009 and flushed before the server closes sockets."""
        hub.going_away()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_TIMEOUT_S
        while hub.sessions and loop.time() < deadline:
            await asyncio.sleep(0.02)

    app.cleanup_ctx.append(sweeper)
    app.on_shutdown.append(going_away)
    return app
