"""`parley run ROLE`: one role of the scale-out topology per process, on Kafka (commands,
events), NATS (gateway subjects) and Redis (presence, rate limits), with the store shared by
all. Each role is an aiohttp application: the gateway serves clients, the workers serve only
`/healthz` and `/readyz` (and the calls role LiveKit's webhooks). It composes; it decides nothing (the embedded default runs the same
stages on in-process transports, see parley/embedded.py).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any, TypeVar

from aiohttp import web

from calls.join import JoinMinter
from calls.service import CallsService
from chat_core.ops.calls import CallDefaults
from chat_core.service import ChatCoreService
from delivery.fanout import Fanout, MemberCache
from delivery.push_decider import PushDecider
from delivery.worker import DeliveryWorker
from gateway.app import gateway_app
from gateway.hub import Hub
from gateway.interest import ConvFollower
from gateway.presence import GatewayPresence
from moderation import filters
from moderation.policy import DEFAULT_INSTANCE, InstancePolicy
from parley import hops, topics
from parley.adapters.kafka_log import KafkaLogConsumer, KafkaLogProducer, ensure_topics
from parley.adapters.nats_bus import NatsBus
from parley.adapters.redis_state import RedisMemberCache, RedisPresence, connect_redis, rate_limit_storage
from parley.auth import Passwords, Tokens, load_or_create_secret
from parley.config import Settings
from parley.health import Ready, add_health_routes, answers, pipeline_task
from parley.ports import GatewayBus, LogConsumer, LogProducer, Store
from parley.records import Command, EventRecord
from parley.app.stores import attachment_routes, attachments_for, open_store
from push.marks import RedisSentMarks
from push.notification import PushRequest
from push.retry import DeadLetter, RetryPolicy
from push.sender import configured_pushkins
from push.worker import DeviceRateLimit, PushWorker

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Group timings: a dead consumer's partitions move within about `SESSION_TIMEOUT_MS`.
SESSION_TIMEOUT_MS, HEARTBEAT_INTERVAL_MS, REBALANCE_TIMEOUT_MS = 6000, 500, 5000
#: Redis answers a ping in well under a millisecond: half a second is already an outage.
REDIS_PROBE_S = 0.5


async def _store(settings: Settings, stack: AsyncExitStack) -> Store:
    store = await open_store(settings)
    stack.push_async_callback(store.close)
    return store


async def ensure_log_topics(settings: Settings, bootstrap: str) -> None:
    """The command, event and push topics, as the settings say (see `ensure_topics`)."""
    await ensure_topics(bootstrap, [topics.COMMANDS, topics.EVENTS, topics.PUSH, topics.PUSH_DEAD],
                        settings.kafka_partitions,
                        replication_factor=settings.kafka_replication_factor,
                        min_insync_replicas=settings.kafka_min_insync_replicas)


def _producer(settings: Settings, topic: str, client_id: str, **kw: Any) -> KafkaLogProducer[Any]:
    return KafkaLogProducer(settings.kafka_bootstrap, topic, client_id=client_id,
                            enable_idempotence=settings.kafka_idempotence, **kw)


def _consumer(settings: Settings, topic: str, group: str, item_type: type[T], client_id: str) -> KafkaLogConsumer[T]:
    return KafkaLogConsumer(settings.kafka_bootstrap, topic, group, item_type, client_id=client_id,
                            session_timeout_ms=SESSION_TIMEOUT_MS, heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
                            rebalance_timeout_ms=REBALANCE_TIMEOUT_MS,
                            fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
                            commit_interval_ms=settings.kafka_commit_interval_ms)


# ---- gateway ------------------------------------------------------------------------------

async def _gateway(settings: Settings, stack: AsyncExitStack) -> web.Application:
    gateway_id = settings.gateway_id or "gw-" + secrets.token_hex(4)
    hops.register_process("gateway", gateway_id)
    store = await _store(settings, stack)
    bus = await NatsBus.connect(settings.nats_url, name=gateway_id)
    stack.push_async_callback(bus.close)
    redis = connect_redis(settings.redis_url)
    stack.push_async_callback(redis.aclose)
    commands: KafkaLogProducer[Command] = _producer(settings, topics.COMMANDS, gateway_id)
    await commands.start()
    stack.push_async_callback(commands.stop)
    shared = RedisPresence(redis)
    presence = GatewayPresence(shared, gateway_id)
    hub = Hub(gateway_id, settings.limits)
    inbox = await bus.serve_gateway(gateway_id, hub.on_message)
    # Typing: member lists from Redis, which delivery keeps current.
    fanout = Fanout(MemberCache(store, shared=RedisMemberCache(redis), hold=False), shared, bus)
    if settings.conv_subject_min_members:
        hub.follower = ConvFollower(inbox, fanout.members, store, hub, settings.conv_subject_min_members)
    secret = settings.jwt_secret or load_or_create_secret(settings.data_dir)
    tokens = Tokens(secret, settings.token_ttl_s)

    async def ready() -> dict[str, bool]:
        return {"kafka": commands.healthy, "nats": bus.connected, "redis": await answers(redis.ping, REDIS_PROBE_S),
                "presence": presence.alive, "store": await answers(store.ping)}

    attachments = attachments_for(settings, secret)
    return gateway_app(hub=hub, store=store, tokens=tokens, passwords=Passwords(), commands=commands,
                       fanout=fanout, bus=bus, attachments=attachments, limits=settings.limits,
                       sessions=settings.sessions, ready=ready, presence=presence,
                       limits_storage=rate_limit_storage(settings.redis_url, redis),
                       calls=JoinMinter.from_settings(settings), routes=attachment_routes(attachments),
                       push_enabled=settings.push_configured)


# ---- chat_core ----------------------------------------------------------------------------

def chat_core_service(settings: Settings, store: Store, commands: LogConsumer[Command],
                      events: LogProducer[EventRecord], bus: GatewayBus,
                      partitions: int = 1) -> ChatCoreService:
    """chat_core with the instance policy and the content filter the settings name."""
    instance = InstancePolicy.from_json(settings.policy_json) if settings.policy_json else DEFAULT_INSTANCE
    calls = CallDefaults(ring_timeout_ms=settings.call_ring_timeout_s * 1000,
                         max_participants=settings.call_max_participants,
                         max_video_subscriptions=settings.call_max_video_subscriptions)
    return ChatCoreService(store, commands, events, bus, partitions, instance=instance,
                           content_filter=filters.configured(settings), limits=settings.limits,
                           policy_refresh_s=settings.policy_refresh_s, calls=calls,
                           relay_checkpoint_s=settings.relay_checkpoint_s)


def calls_service(settings: Settings, store: Store, commands: LogProducer[Command],
                  records: LogConsumer[EventRecord], name: str) -> CallsService | None:
    """The calls role's work, on the LiveKit the settings name; None when none is (calls off)."""
    if not (settings.livekit_url and settings.livekit_api_key and settings.livekit_api_secret):
        return None
    # livekit-api (~5.5 MiB of RSS) is imported only where a LiveKit is configured, not by every process.
    from calls.livekit import LiveKitRoomService
    from calls.webhooks import WebhookIntake

    return CallsService(rooms=LiveKitRoomService(settings.livekit_url, settings.livekit_api_key,
                                                 settings.livekit_api_secret),
                        intake=WebhookIntake(settings.livekit_api_key, settings.livekit_api_secret),
                        commands=commands, records=records, store=store, name=name,
                        ring_timeout_s=settings.call_ring_timeout_s, sweep_interval_s=settings.call_sweep_interval_s,
                        sweep_grace_s=settings.call_sweep_grace_s)


async def _chat_core(settings: Settings, stack: AsyncExitStack) -> web.Application:
    name = "chat-core-" + secrets.token_hex(3)
    hops.register_process("chat-core", name)
    store = await _store(settings, stack)
    bus = await NatsBus.connect(settings.nats_url, name=name)
    stack.push_async_callback(bus.close)
    events: KafkaLogProducer[EventRecord] = _producer(settings, topics.EVENTS, name)
    await events.start()
    stack.push_async_callback(events.stop)
    commands = _consumer(settings, topics.COMMANDS, topics.CHAT_CORE_GROUP, Command, name)
    service = chat_core_service(settings, store, commands, events, bus, settings.kafka_partitions)
    await commands.start()
    stack.push_async_callback(commands.stop)  # leaves the group after the service stopped
    await service.start()
    stack.push_async_callback(service.stop)

    async def ready() -> dict[str, bool]:
        return {"worker": service.running(), "kafka": commands.healthy and events.healthy, "nats": bus.connected,
                "store": await answers(store.ping)}
    return _health_app(ready, name, service.running)


# ---- delivery -----------------------------------------------------------------------------

async def _delivery(settings: Settings, stack: AsyncExitStack) -> web.Application:
    name = "delivery-" + secrets.token_hex(3)
    hops.register_process("delivery", name)
    store = await _store(settings, stack)
    bus = await NatsBus.connect(settings.nats_url, name=name)
    stack.push_async_callback(bus.close)
    redis = connect_redis(settings.redis_url)
    stack.push_async_callback(redis.aclose)
    fanout = Fanout(MemberCache(store, shared=RedisMemberCache(redis)), RedisPresence(redis), bus,
                    min_members=settings.conv_subject_min_members)
    events: KafkaLogConsumer[EventRecord] = _consumer(settings, topics.EVENTS, topics.DELIVERY_GROUP,
                                                      EventRecord, name)
    # Another worker may have changed a conversation's members while this one did not own it.
    events.watch(lambda _: fanout.members.clear(), lambda _: fanout.members.clear())
    await events.start()
    stack.push_async_callback(events.stop)
    task = pipeline_task(DeliveryWorker(events, fanout).run(), "delivery")

    async def stop() -> None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    stack.push_async_callback(stop)

    async def ready() -> dict[str, bool]:
        return {"worker": not task.done(), "kafka": events.healthy, "nats": bus.connected,
                "redis": await answers(redis.ping, REDIS_PROBE_S), "store": await answers(store.ping)}
    return _health_app(ready, name, lambda: not task.done())


# ---- calls --------------------------------------------------------------------------------

async def _calls(settings: Settings, stack: AsyncExitStack) -> web.Application:
    name = "calls-" + secrets.token_hex(3)
    hops.register_process("calls", name)
    store = await _store(settings, stack)
    commands: KafkaLogProducer[Command] = _producer(settings, topics.COMMANDS, name)
    await commands.start()
    stack.push_async_callback(commands.stop)
    records = _consumer(settings, topics.EVENTS, topics.CALLS_GROUP, EventRecord, name)
    service = calls_service(settings, store, commands, records, name)
    if service is None:
        raise ValueError("the calls role needs PARLEY_LIVEKIT_URL, PARLEY_LIVEKIT_API_KEY and PARLEY_LIVEKIT_API_SECRET")
    await records.start()
    stack.push_async_callback(records.stop)
    await service.start()
    stack.push_async_callback(service.stop)

    async def ready() -> dict[str, bool]:
        return {"worker": service.running(), "kafka": commands.healthy and records.healthy,
                "store": await answers(store.ping)}
    app = _health_app(ready, name, service.running)
    service.mount(app)
    return app


# ---- push ---------------------------------------------------------------------------------

def _user_key(request: PushRequest) -> str:
    return request.user


async def _push(settings: Settings, stack: AsyncExitStack) -> web.Application:
    """The push decision (its own consumer group on the event log, partitioned by conversation
    like delivery) and the push worker (`parley.push`, keyed by user), in one process."""
    name = "push-" + secrets.token_hex(3)
    hops.register_process("push", name)
    store = await _store(settings, stack)
    redis = connect_redis(settings.redis_url)
    stack.push_async_callback(redis.aclose)
    requests: KafkaLogProducer[PushRequest] = _producer(settings, topics.PUSH, name, key_of=_user_key)
    dead: KafkaLogProducer[DeadLetter] = _producer(settings, topics.PUSH_DEAD, name)
    events = _consumer(settings, topics.EVENTS, topics.PUSH_DECISION_GROUP, EventRecord, name)
    source = _consumer(settings, topics.PUSH, topics.PUSH_GROUP, PushRequest, name)
    for client in (requests, dead, events, source):
        await client.start()
        stack.push_async_callback(client.stop)
    pushkins = configured_pushkins(settings)
    for pushkin in pushkins.values():
        stack.push_async_callback(pushkin.close)
    decider = PushDecider(store, RedisPresence(redis), requests, window_s=settings.push_looking_window_s)
    worker = PushWorker(source, pushkins, RetryPolicy(attempts=settings.push_retry_attempts), store, dead,
                        RedisSentMarks(redis, settings.push_dedup_ttl_s), DeviceRateLimit(settings.push_device_per_minute))
    tasks = [pipeline_task(decider.run(events), "push decision"), pipeline_task(worker.run(), "push")]

    async def stop() -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    stack.push_async_callback(stop)

    def alive() -> bool:
        return not any(task.done() for task in tasks)

    async def ready() -> dict[str, bool]:
        return {"worker": alive(), "providers": bool(pushkins), "kafka": all(
            c.healthy for c in (requests, dead, events, source)),
            "redis": await answers(redis.ping, REDIS_PROBE_S), "store": await answers(store.ping)}
    return _health_app(ready, name, alive)


def _health_app(ready: Ready, name: str, alive: Callable[[], bool]) -> web.Application:
    app = web.Application()
    add_health_routes(app, ready, name, alive)
    return app


ROLES: dict[str, Callable[[Settings, AsyncExitStack], Awaitable[web.Application]]] = {
    "gateway": _gateway, "chat-core": _chat_core, "delivery": _delivery, "calls": _calls, "push": _push,
}


async def build_role(role: str, settings: Settings) -> web.Application:
    """The role's application, its dependencies connected; they close when the app is cleaned up
    (for the gateway: after its sessions were told to go and drained)."""
    stack = AsyncExitStack()
    try:
        await ensure_log_topics(settings, settings.kafka_bootstrap)
        app = await ROLES[role](settings, stack)
    except BaseException:
        await stack.aclose()
        raise

    async def lifetime(_: web.Application) -> AsyncIterator[None]:
        yield
        await stack.aclose()
    app.cleanup_ctx.insert(0, lifetime)  # torn down last
    return app
