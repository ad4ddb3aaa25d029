"""The embedded default: every stage of the pipeline in one process, on SQLite and in-process
transports. It composes; it decides nothing (the same stages run when scaled out)."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator

from aiohttp import web

from chat_core.core import ChatCore
from chat_core.relay import OutboxRelay
from chat_core.worker import CommandWorker
from delivery.fanout import Fanout, MemberCache
from delivery.worker import DeliveryWorker
from gateway.hub import Hub
from gateway.reads import Reads
from gateway.rest import AuthRoutes, add_routes, errors_as_json
from gateway.ws import WsEndpoint
from parley.adapters.inprocess import InProcessLog, LocalBus
from parley.adapters.sqlite_store import SqliteStore
from parley.auth import Passwords, Tokens, load_or_create_secret
from parley.config import Settings
from parley.ratelimit import Limiter
from parley.records import Command, EventRecord

log = logging.getLogger(__name__)
DB_FILE = "parley.db"
#: Commands waiting for chat_core before the gateway answers `unavailable`.
COMMAND_BACKLOG = 50_000
#: Stored events waiting for delivery (they are durable; this only bounds memory).
EVENT_BACKLOG = 200_000
DRAIN_TIMEOUT_S = 5.0


async def build_app(settings: Settings) -> web.Application:
    limits = settings.limits
    store = SqliteStore(settings.data_dir / DB_FILE, settings.sqlite_synchronous)
    await store.open()
    tokens = Tokens(settings.jwt_secret or load_or_create_secret(settings.data_dir), settings.token_ttl_s)
    passwords = Passwords()
    commands: InProcessLog[Command] = InProcessLog(COMMAND_BACKLOG)
    events: InProcessLog[EventRecord] = InProcessLog(EVENT_BACKLOG)
    bus = LocalBus()
    hub = Hub("gw-" + secrets.token_hex(4), limits)
    bus.attach(hub.gateway_id, hub.on_message)
    fanout = Fanout(MemberCache(store), hub, bus)
    relay = OutboxRelay(store, events)
    worker = CommandWorker(ChatCore(), commands, store, bus, relay, passwords)
    delivery = DeliveryWorker(events, fanout)

    app = web.Application(middlewares=[errors_as_json], client_max_size=limits.max_frame_bytes)
    ws = WsEndpoint(hub, Reads(store), tokens, commands, fanout, limits,
                    Limiter("send", limits.send_burst, limits.send_window_s))
    app.router.add_get("/v1/ws", ws.handle)
    auth = AuthRoutes(store, tokens, passwords, Limiter("login failure", 10, 300))

    async def ready() -> dict[str, bool]:
        return {"store": True, "pipeline": all(not t.done() for t in tasks)}

    add_routes(app, auth, limits, ready)
    tasks: list[asyncio.Task[None]] = []

    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        await relay.start()
        tasks.extend(asyncio.create_task(coro, name=name) for name, coro in (
            ("chat_core", worker.run()), ("relay", relay.run()), ("delivery", delivery.run()),
            ("sweeper", hub.sweep_forever())))
        yield
        # Sessions are gone (on_shutdown); let chat_core finish what it took, then stop.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_TIMEOUT_S
        while len(commands) and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await relay.flush()
        await store.close()

    async def going_away(_: web.Application) -> None:
        hub.going_away()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_TIMEOUT_S
        while hub.sessions and loop.time() < deadline:
            await asyncio.sleep(0.02)

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(going_away)
    return app
