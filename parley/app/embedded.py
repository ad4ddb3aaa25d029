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
from delivery.push_decider import PushDecider
from push.marks import MemorySentMarks
from push.notification import PushRequest
from push.retry import RetryPolicy
from push.sender import configured_pushkins
from push.worker import DeviceRateLimit, LoggedDeadLetters, PushWorker

#: Commands waiting for chat_core before the gateway answers `unavailable`.
COMMAND_BACKLOG = 50_000
#: Stored events waiting for delivery (they are durable; this only bounds memory).
EVENT_BACKLOG = 200_000
#: Push requests waiting for the push worker (a stored event is decided again after a crash).
PUSH_BACKLOG = 100_000


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
    # Side logs of the stored events, beside delivery's: the calls role's share, and the push
    # decision's copy (which writes push requests to an in-process log the push worker consumes).
    call_records: InProcessLog[EventRecord] = InProcessLog(EVENT_BACKLOG)
    calls = calls_service(settings, store, commands, call_records, "calls-" + hub.gateway_id)
    decided: InProcessLog[EventRecord] = InProcessLog(EVENT_BACKLOG)
    push_log: InProcessLog[PushRequest] = InProcessLog(PUSH_BACKLOG)
    push_on = settings.push_configured
    sides = [*([] if calls is None else [(call_records, wants)]), *([(decided, None)] if push_on else [])]
    relayed: LogProducer[EventRecord] = LogTee(events, *sides) if sides else events
    chat_core = chat_core_service(settings, store, commands, relayed, bus)
    delivery = DeliveryWorker(events, fanout)
    delivery_task: list[asyncio.Task[None]] = []
    push_tasks: list[asyncio.Task[None]] = []

    async def ready() -> dict[str, bool]:
        checks = {"chat_core": chat_core.running(), "delivery": bool(delivery_task) and not delivery_task[0].done(),
                  "store": await answers(store.ping)}
        return checks if calls is None else {**checks, "calls": calls.running()}

    attachments = attachments_for(settings, secret)
    app = gateway_app(hub=hub, store=store, tokens=tokens, passwords=passwords, commands=commands,
                      fanout=fanout, bus=bus, attachments=attachments, limits=settings.limits,
                      sessions=settings.sessions, ready=ready, calls=JoinMinter.from_settings(settings),
                      routes=[*attachment_routes(attachments), *([] if calls is None else [calls.mount])],
                      push_enabled=push_on)

    async def pipeline(_: web.Application) -> AsyncIterator[None]:
        await chat_core.start()
        delivery_task.append(pipeline_task(delivery.run(), "delivery"))
        if calls is not None:
            await calls.start()
        pushkins = configured_pushkins(settings)  # inside the loop: aioapns binds to it
        if push_on:
            decider = PushDecider(store, hub, push_log, window_s=settings.push_looking_window_s)
            worker = PushWorker(push_log, pushkins, RetryPolicy(attempts=settings.push_retry_attempts), store,
                                LoggedDeadLetters(), MemorySentMarks(settings.push_dedup_ttl_s),
                                DeviceRateLimit(settings.push_device_per_minute))
            push_tasks.extend([pipeline_task(decider.run(decided), "push decision"),
                               pipeline_task(worker.run(), "push")])
        yield
        # Sessions are gone (the gateway's on_shutdown); chat_core finishes what it took.
        await drain(lambda: len(commands) > 0, settings.limits.drain_timeout_s)
        if calls is not None:
            await calls.stop()
        await chat_core.stop()
        for task in (*delivery_task, *push_tasks):
            task.cancel()
        await asyncio.gather(*delivery_task, *push_tasks, return_exceptions=True)
        for pushkin in pushkins.values():
            await pushkin.close()
        await store.close()

    app.cleanup_ctx.append(pipeline)
    return app
