"""The embedded default: every stage of the pipeline in one process, on SQLite and in-process
transports, attachments in the data dir (or S3 when configured). It composes; it decides nothing
(the same stages run when scaled out)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

from aiohttp import web

from calls.join import JoinMinter
from calls.service import wants
from delivery.fanout import Fanout, MemberCache
from delivery.worker import DeliveryWorker
from gateway.app import gateway_app
from gateway.hub import Hub
from gateway.interest import ConvFollower
from parley import hops
from parley.adapters.inprocess import InProcessLog, LocalBus, LogTee
from parley.auth import Passwords, Tokens, load_or_create_secret
from parley.backoff import drain
from parley.config import Settings
from parley.health import answers, pipeline_task
from parley.ports import LogProducer
from parley.records import Command, EventRecord
from parley.app.roles import calls_service, chat_core_service
from parley.app.stores import attachment_routes, attachments_for, open_store

#: Commands waiting for chat_core before the gateway answers `unavailable`.
COMMAND_BACKLOG = 50_000
#: Stored events waiting for delivery (they are durable; this only bounds memory).
EVENT_BACKLOG = 200_000


async def build_app(settings: Settings) -> web.Application:
    store = await open_store(settings)
    secret = settings.jwt_secret or load_or_create_secret(settings.data_dir)
    tokens = Tokens(secret, settings.token_ttl_s)
    passwords = Passwords()
    commands: InProcessLog[Command] = InProcessLog(COMMAND_BACKLOG)
    events: InProcessLog[EventRecord] = InProcessLog(EVENT_BACKLOG)
    bus = LocalBus()
    hub = Hub("gw-" + secrets.token_hex(4), settings.limits)
    inbox = bus.attach(hub.gateway_id, hub.on_message)
    hops.register_process("dev", hub.gateway_id)
    fanout = Fanout(MemberCache(store), hub, bus, min_members=settings.conv_subject_min_members)
    if settings.conv_subject_min_members:
        hub.follower = ConvFollower(inbox, fanout.members, store, hub, settings.conv_subject_min_members)
    # The calls role's share of the events goes to a log of its own, beside delivery's.
    call_records: InProcessLog[EventRecord] = InProcessLog(EVENT_BACKLOG)
    calls = calls_service(settings, store, commands, call_records, "calls-" + hub.gateway_id)
    relayed: LogProducer[EventRecord] = events if calls is None else LogTee(events, call_records, wants)
    chat_core = chat_core_service(settings, store, commands, relayed, bus)
    delivery = DeliveryWorker(events, fanout)
    delivery_task: list[asyncio.Task[None]] = []

    async def ready() -> dict[str, bool]:
        checks = {"chat_core": chat_core.running(), "delivery": bool(delivery_task) and not delivery_task[0].done(),
                  "store": await answers(store.ping)}
        return checks if calls is None else {**checks, "calls": calls.running()}

    attachments = attachments_for(settings, secret)
    app = gateway_app(hub=hub, store=store, tokens=tokens, passwords=passwords, commands=commands,
                      fanout=fanout, bus=bus, attachments=attachments, limits=settings.limits,
                      sessions=settings.sessions, ready=ready, calls=JoinMinter.from_settings(settings),
                      routes=[*attachment_routes(attachments), *([] if calls is None else [calls.mount])])

    async def pipeline(_: web.Application) -> AsyncIterator[None]:
        await chat_core.start()
        delivery_task.append(pipeline_task(delivery.run(), "delivery"))
        if calls is not None:
            await calls.start()
        yield
        # Sessions are gone (the gateway's on_shutdown); chat_core finishes what it took.
        await drain(lambda: len(commands) > 0, settings.limits.drain_timeout_s)
        if calls is not None:
            await calls.stop()
        await chat_core.stop()
        delivery_task[0].cancel()
        await asyncio.gather(*delivery_task, return_exceptions=True)
        await store.close()

    app.cleanup_ctx.append(pipeline)
    return app
