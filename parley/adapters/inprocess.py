"""The embedded default's transports: an in-process log and a direct gateway bus (with the
same conversation subjects as NATS, so large conversations take the same path in one process).

The log holds only what is not yet stored: a command lost in a crash was never acknowledged,
and an event lost in a crash is still in the outbox, so durability comes from the store.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from parley.errors import Unavailable
from parley.ports import Broadcast, GatewayMessage, PartitionsHook

T = TypeVar("T")
log = logging.getLogger(__name__)


class InProcessLog(Generic[T]):
    """A bounded FIFO with the producer and consumer shape of a log partition."""

    def __init__(self, capacity: int) -> None:
        self._items: deque[T] = deque()
        self._capacity = capacity
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    async def publish(self, item: T) -> None:
        await self.publish_many((item,))

    async def publish_many(self, items: Sequence[T]) -> None:
        if len(self._items) + len(items) > self._capacity:
            raise Unavailable("the server is overloaded; retry", retry_after_ms=250)
        self._items.extend(items)
        self._ready.set()

    def watch(self, on_assigned: PartitionsHook, on_revoked: PartitionsHook) -> None:
        on_assigned({0})  # one partition, one consumer, for good

    async def next_batch(self, max_n: int) -> list[T]:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        items = self._items
        return [items.popleft() for _ in range(min(max_n, len(items)))]

    async def commit(self) -> None:
        """Nothing to do: the batch's effects are in the store before this is called."""


class LogTee(Generic[T]):
    """One producer for several in-process consumers: every item to `main`, and to each side log
    the items its filter picks (every item without one): in `parley dev`, the calls role's share
    of the events and the push decision's copy, each consumer with its own log as Kafka gives each
    its consumer group. A full side log drops what it cannot take rather than stop the main one:
    its consumer is the one behind."""

    def __init__(self, main: InProcessLog[T], *sides: tuple[InProcessLog[T], Callable[[T], bool] | None]) -> None:
        self._main, self._sides = main, sides

    async def publish(self, item: T) -> None:
        await self.publish_many((item,))

    async def publish_many(self, items: Sequence[T]) -> None:
        await self._main.publish_many(items)
        for side, wanted in self._sides:
            picked = list(items) if wanted is None else [item for item in items if wanted(item)]
            if picked:
                try:
                    await side.publish_many(picked)
                except Unavailable:
                    log.error("a side log is full: %d items not passed on", len(picked))


Handler = Callable[[GatewayMessage], None]


class LocalBus:
    """Gateway messages as direct calls into the gateways of this process."""

    def __init__(self) -> None:
        self._gateways: dict[str, Handler] = {}
        self._inboxes: list[LocalInbox] = []

    def attach(self, gateway_id: str, handler: Handler) -> LocalInbox:
        """Serves `gateway_id`; the returned inbox joins and leaves conversation subjects."""
        self._gateways[gateway_id] = handler
        inbox = LocalInbox(handler)
        self._inboxes.append(inbox)
        return inbox

    async def to_gateway(self, gateway_id: str, msg: GatewayMessage) -> None:
        handler = self._gateways.get(gateway_id)
        if handler is not None:  # a gateway that is gone has no sessions left to tell
            handler(msg)

    async def publish_conv(self, conv: str, msg: Broadcast) -> None:
        for inbox in self._inboxes:
            if conv in inbox.refs:
                inbox.handler(msg)


class LocalInbox:
    """`ConvSubscriptions` of one in-process gateway, counted like `GatewayInbox`'s."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.refs: dict[str, int] = {}

    async def join_conv(self, conv: str) -> None:
        self.refs[conv] = self.refs.get(conv, 0) + 1

    async def leave_conv(self, conv: str) -> None:
        refs = self.refs.pop(conv, 0) - 1
        if refs > 0:
            self.refs[conv] = refs
