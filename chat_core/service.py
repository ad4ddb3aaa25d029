"""chat_core as a runnable unit: the command worker and the outbox relay, started and stopped
together (the relay replays what a previous run stored but did not relay before any new work)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from chat_core.core import DEFAULT_LIMITS, ChatCore
from chat_core.ops.calls import CallDefaults
from chat_core.relay import OutboxRelay
from chat_core.worker import CommandWorker
from moderation import instance_policy
from moderation.filters import ContentFilter
from moderation.policy import DEFAULT_INSTANCE, InstancePolicy
from parley.health import PipelineTasks
from parley.limits import Limits
from parley.ports import GatewayBus, LogConsumer, LogProducer, Store
from parley.records import Command, EventRecord

log = logging.getLogger(__name__)


class ChatCoreService:
    def __init__(self, store: Store, commands: LogConsumer[Command], events: LogProducer[EventRecord],
                 bus: GatewayBus, partitions: int = 1, *,
                 instance: InstancePolicy = DEFAULT_INSTANCE, content_filter: ContentFilter | None = None,
                 limits: Limits = DEFAULT_LIMITS, policy_refresh_s: float = 10.0,
                 calls: CallDefaults = CallDefaults(), relay_checkpoint_s: float = 0.5) -> None:
        """`policy_refresh_s`: how soon a conversation default an admin changed reaches the writer.
        `relay_checkpoint_s`: how often the outbox relay records its progress."""
        core = ChatCore(instance=instance, content_filter=content_filter, limits=limits, calls=calls)
        self.relay = OutboxRelay(store, events, checkpoint_every_s=relay_checkpoint_s)
        self.worker = CommandWorker(core, commands, store, bus, self.relay, partitions=partitions)
        self._store = store
        self._core = core
        self._base = instance
        self._policy_refresh_s = policy_refresh_s
        self._tasks = PipelineTasks()

    async def start(self) -> None:
        await self._refresh_policy()
        await self.worker.settle()  # shards owned from the start are replayed before any new work
        self._tasks.add(self.worker.run(), "chat_core")
        self._tasks.add(self.relay.run(), "relay")
        self._tasks.add(self._follow_policy_forever(), "policy")

    async def _refresh_policy(self) -> None:
        """The conversation defaults and call switches admins set at run time (PATCH
        /v1/admin/policies, kept in the store) over PARLEY_POLICY's. Swapped whole between
        batches: no decision sees half of it."""
        try:
            stored = await self._store.instance_policy()
            defaults = {**self._base.defaults, **instance_policy.engine_defaults(stored.get("conv_defaults") or {})}
            calls = bool(stored.get("calls", self._base.calls))
            guest_calls = bool(stored.get("guest_calls", self._base.guest_calls))
            current = self._core.instance
            if (defaults, calls, guest_calls) != (current.defaults, current.calls, current.guest_calls):
                self._core.instance = dataclasses.replace(self._base, defaults=defaults, calls=calls,
                                                          guest_calls=guest_calls)
                log.info("instance conversation defaults now %s; calls %s, for guests %s", defaults, calls,
                         guest_calls)
        except Exception:  # the store is away or the stored value is bad: keep the last good one
            log.warning("instance policy not refreshed", exc_info=True)

    async def _follow_policy_forever(self) -> None:
        while True:
            await asyncio.sleep(self._policy_refresh_s)
            await self._refresh_policy()

    def running(self) -> bool:
        return self._tasks.running()

    async def stop(self) -> None:
        await self._tasks.stop()
        await self.relay.flush()
