"""The gateway role as an aiohttp application: WebSocket sessions, REST (accounts, uploads),
health, web client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence

from aiohttp import web
from limits.aio.storage import Storage

from calls.join import CallCapabilities, JoinMinter
from delivery.fanout import Fanout
from gateway import client_faults
from gateway.calls import CallJoins, CallRoutes
from gateway.contacts import Contacts
from gateway.commands import CommandRunner
from gateway.hub import Hub
from gateway.presence import GatewayPresence
from gateway.reads import Reads
from gateway.rest import AuthRoutes, MemberRoutes, add_routes, errors_as_json
from gateway.security_headers import add_security_headers
from gateway.uploads import UploadRoutes
from gateway.ws import WsEndpoint
from moderation.admin import openapi
from moderation.admin.routes import register as register_admin
from moderation.admin.service import AdminService
from parley.accounts import Authenticator
from parley.auth import Passwords, Tokens
from parley.backoff import drain
from parley.health import Ready, pipeline_task
from parley.limits import LOGIN_ATTEMPTS, LOGIN_WINDOW_S, Limits
from parley.ports import Attachments, LogProducer, Store
from parley.ratelimit import Limiter
from parley.records import Command


def gateway_app(*, hub: Hub, store: Store, tokens: Tokens, passwords: Passwords,
                commands: LogProducer[Command], fanout: Fanout, attachments: Attachments, limits: Limits,
                ready: Ready,
                presence: GatewayPresence | None = None, limits_storage: Storage | None = None,
                calls: JoinMinter | None = None,
                routes: Sequence[Callable[[web.Application], None]] = ()) -> web.Application:
    """`presence` and `limits_storage` are the shared (Redis) ones when scaled out; without them
    this gateway is the only one: it answers `locate` itself and counts rate limits in memory.
    `calls`: LiveKit's join minter (None: calls off). `routes` mount what an adapter or another
    role serves through the gateway (the local object store's URLs; `parley dev`'s webhooks)."""
    app = web.Application(middlewares=[errors_as_json], client_max_size=limits.max_frame_bytes,
                          handler_args={"logger": client_faults.LOGGER})
    app.on_response_prepare.append(add_security_headers)
    authenticator = Authenticator(tokens, store)
    reads = Reads(store)
    contacts = Contacts(store, fanout, reads.blocks)
    ws = WsEndpoint(hub, reads, authenticator, commands, fanout, contacts, limits,
                    Limiter("send", limits.send_burst, limits.send_window_s, limits_storage), presence,
                    guest_send_limiter=Limiter("guest send", limits.guest_send_burst, limits.guest_send_window_s,
                                               limits_storage))
    app.router.add_get("/v1/ws", ws.handle)
    per_ip = (Limiter("per-IP auth", limits.ip_auth_burst, limits.ip_auth_window_s, limits_storage)
              if limits.ip_auth_burst > 0 else None)
    # One count per username for every check of its password: logins and account deletion.
    password_attempts = Limiter("login", LOGIN_ATTEMPTS, LOGIN_WINDOW_S, limits_storage)
    auth = AuthRoutes(store, tokens, passwords, password_attempts, per_ip)
    runner = CommandRunner(hub, commands)
    members = MemberRoutes(store, authenticator, runner, hub, passwords, password_attempts,
                           Limiter("report", limits.report_burst, limits.report_window_s, limits_storage),
                           Limiter("export", limits.export_burst, limits.export_window_s, limits_storage))
    hub.call_joins = None if calls is None else CallJoins(calls)
    call_routes = CallRoutes(authenticator, runner, hub.call_joins)
    call_routes.mount(app)
    add_routes(app, auth, members, limits, ready, hub.gateway_id,
               CallCapabilities(calls=False) if calls is None else calls.capabilities(), call_routes.ice_servers)
    register_admin(app, AdminService(store, runner, hub), authenticator, openapi.document)
    UploadRoutes(store, attachments, authenticator, limits,
                 Limiter("upload", limits.upload_burst, limits.upload_window_s, limits_storage)).mount(app)
    for mount in routes:
        mount(app)

    async def housekeeping(_: web.Application) -> AsyncIterator[None]:
        tasks = [pipeline_task(hub.sweep_forever(), "sweeper")]
        if hub.follower is not None:
            tasks.append(pipeline_task(hub.follower.run(), "conv interest"))
        if presence is not None:
            await presence.beat(hub.users())  # alive before the first session registers
            tasks.append(pipeline_task(presence.beat_forever(hub), "presence"))
        yield
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await contacts.stop()

    async def going_away(_: web.Application) -> None:
        """SIGTERM: every session is told 4009 and flushed before the server closes sockets."""
        hub.going_away()
        await drain(lambda: bool(hub.sessions), limits.drain_timeout_s)

    app.cleanup_ctx.append(housekeeping)
    app.on_shutdown.append(going_away)
    return app
