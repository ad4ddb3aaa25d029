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
from gateway import openapi as client_openapi
from gateway.admission import Admission
from gateway.calls import CallJoins, CallRoutes
from gateway.contacts import Contacts
from gateway.devices import DeviceRoutes
from gateway.commands import CommandRunner
from gateway.hub import Hub
from gateway.presence import GatewayPresence
from gateway.privacy_settings import PrivacyRoutes
from gateway.profiles import ProfileAnnouncer, ProfileRoutes
from gateway.reads import Reads
from gateway.received import ReceivedAcks
from gateway.request_limits import RequestLimits
from gateway.rest import AuthRoutes, MemberRoutes, add_routes, errors_as_json
from gateway.revocations import RevocationFollower, bus_announcer
from gateway.room_passwords import RoomPasswords
from gateway.security_headers import add_security_headers
from gateway.session_routes import SessionRoutes
from gateway.uploads import Thumbnailer, UploadRoutes
from gateway.write_facts import WriteFacts
from gateway.ws import WsEndpoint
from moderation.admin import openapi
from moderation.admin.routes import register as register_admin
from moderation.admin.service import AdminService
from parley.accounts import Authenticator
from parley.auth import Passwords, Tokens
from parley.backoff import drain
from parley.config import SessionLifetimes
from parley.health import Ready, pipeline_task
from parley.limits import LOGIN_ATTEMPTS, LOGIN_WINDOW_S, Limits
from parley.ports import Attachments, GatewayBus, LogProducer, Store
from parley.ratelimit import Limiter
from parley.records import Command
from parley.session_families import Logins, Revoker


def gateway_app(*, hub: Hub, store: Store, tokens: Tokens, passwords: Passwords,
                commands: LogProducer[Command], fanout: Fanout, bus: GatewayBus, attachments: Attachments,
                limits: Limits, sessions: SessionLifetimes, ready: Ready,
                presence: GatewayPresence | None = None, limits_storage: Storage | None = None,
                calls: JoinMinter | None = None,
                routes: Sequence[Callable[[web.Application], None]] = (), push_enabled: bool = False) -> web.Application:
    """`presence` and `limits_storage` are the shared (Redis) ones when scaled out; without them
    this gateway is the only one: it answers `locate` itself and counts rate limits in memory.
    `calls`: LiveKit's join minter (None: calls off). `routes` mount what an adapter or another
    role serves through the gateway (the local object store's URLs; `parley dev`'s webhooks).
    Revocations go out on `bus` to the gateways presence finds the user on."""
    app = web.Application(middlewares=[errors_as_json], client_max_size=limits.max_frame_bytes,
                          handler_args={"logger": client_faults.LOGGER})
    app.on_response_prepare.append(add_security_headers)
    authenticator = Authenticator(tokens, store, store)
    revoker = Revoker(store, bus_announcer(bus, hub if presence is None else presence))
    logins = Logins(store, tokens, sessions.refresh_ttl_s, revoker)
    reads = Reads(store, limits.receipts_max_members)
    thumbnailer = Thumbnailer(attachments)
    contacts = Contacts(store, fanout, reads.blocks)
    received = ReceivedAcks(commands, hub.gateway_id)
    room_passwords = RoomPasswords(
        store, passwords, Limiter("room password", *limits.rate("room_password"), limits_storage),
        Limiter("room password per room", *limits.rate("room_password_room"), limits_storage),
        threads=limits.password_threads, queue_max=limits.password_queue_max)
    admission = Admission(limits.max_handshakes_per_ip)
    ws = WsEndpoint(hub, reads, authenticator, commands, fanout, contacts, limits,
                    RequestLimits(limits, limits_storage), WriteFacts(room_passwords, store, contacts), presence,
                    received=received, admission=admission)
    app.router.add_get("/v1/ws", ws.handle)
    app.router.add_get(client_openapi.PATH, client_openapi.serve)
    per_ip = (Limiter("per-IP auth", limits.ip_auth_burst, limits.ip_auth_window_s, limits_storage)
              if limits.ip_auth_burst > 0 else None)
    # One count per username for every check of its password: logins and account deletion.
    password_attempts = Limiter("login", LOGIN_ATTEMPTS, LOGIN_WINDOW_S, limits_storage)
    auth = AuthRoutes(store, tokens, passwords, password_attempts, logins, per_ip)
    runner = CommandRunner(hub, commands)
    members = MemberRoutes(store, authenticator, runner, revoker, passwords, password_attempts,
                           Limiter("report", limits.report_burst, limits.report_window_s, limits_storage),
                           Limiter("export", limits.export_burst, limits.export_window_s, limits_storage))
    hub.call_joins = None if calls is None else CallJoins(calls)
    call_routes = CallRoutes(authenticator, runner, hub.call_joins)
    call_routes.mount(app)

    async def ready_unless_draining() -> dict[str, bool]:
        """A draining gateway is not ready, whatever its dependencies say (the check appears
        only then: an orchestrator reads the status, an operator the reason)."""
        checks = await ready()
        return {**checks, "accepting": False} if admission.draining else checks

    add_routes(app, auth, members, limits, ready_unless_draining, hub.gateway_id,
               CallCapabilities(calls=False) if calls is None else calls.capabilities(), call_routes.ice_servers,
               push_enabled)
    SessionRoutes(logins, authenticator, store, passwords, password_attempts, per_ip).mount(app)
    DeviceRoutes(store, store, authenticator, fanout, push_enabled=push_enabled).mount(app)
    register_admin(app, AdminService(store, runner, revoker), authenticator, openapi.document)
    follower = RevocationFollower(store, hub, sessions.revocation_poll_s)
    PrivacyRoutes(store, authenticator, Limiter("privacy", *limits.rate("settings"), limits_storage)).mount(app)
    UploadRoutes(store, attachments, authenticator, limits,
                 Limiter("upload", limits.upload_burst, limits.upload_window_s, limits_storage),
                 thumbnailer).mount(app)
    ProfileRoutes(store, attachments, authenticator, limits, thumbnailer, ProfileAnnouncer(store, fanout),
                  Limiter("directory", limits.directory_burst, limits.directory_window_s, limits_storage),
                  Limiter("profile", limits.profile_burst, limits.profile_window_s, limits_storage)).mount(app)
    for mount in routes:
        mount(app)

    async def housekeeping(_: web.Application) -> AsyncIterator[None]:
        tasks = [pipeline_task(hub.sweep_forever(), "sweeper"), pipeline_task(received.run(), "received"),
                 pipeline_task(follower.run(), "revocation log")]
        if hub.follower is not None:
            tasks.append(pipeline_task(hub.follower.run(), "conv interest"))
        if presence is not None:
            await presence.beat(hub.users())  # alive before the first session registers
            tasks.append(pipeline_task(presence.beat_forever(hub), "presence"))
        yield
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await received.flush()  # what sessions acknowledged before the end
        await contacts.stop()
        room_passwords.close()

    async def going_away(_: web.Application) -> None:
        """SIGTERM: every session is told 4009 and flushed before the server closes sockets.
        The listener is closed already (aiohttp stops its sites first, so the kernel sends new
        connections to the gateways still listening on a shared port); upgrades already read
        are refused, and WebSockets before hello are told 4009."""
        admission.drain()
        hub.going_away()
        await drain(lambda: bool(hub.sessions) or admission.pending, limits.drain_timeout_s)

    app.cleanup_ctx.append(housekeeping)
    app.on_shutdown.append(going_away)
    return app
