"""Fan-out: one event frame -> its recipients -> one message per gateway holding them.

Used by the delivery worker for stored events and by the gateway for ephemeral signals
(typing), so both reach people the same way. The frame is encoded once, upstream; nothing
here builds anything per recipient.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol

from parley import hops
from parley.ports import Deliver, GatewayBus, Presence, Store
from parley.records import EventRecord


class SharedMemberLists(Protocol):
    """Member lists shared by processes (scale-out: `RedisMemberCache`)."""

    async def get(self, conv: str) -> list[str] | None: ...
    async def put(self, conv: str, members: Sequence[str]) -> None: ...
    async def invalidate(self, conv: str) -> None: ...


class MemberCache:
    """Member lists by conversation, dropped when an event says they changed.

    Only the process that sees a conversation's events in order (delivery, which owns its
    partition) may keep lists in memory (`hold=True`). When scaled out, `shared` lists serve
    the other readers (a gateway fanning out typing): delivery drops them on the same events."""

    def __init__(self, store: Store, capacity: int = 20_000, *, shared: SharedMemberLists | None = None,
                 hold: bool = True) -> None:
        self._store = store
        self._lists: OrderedDict[str, Sequence[str]] = OrderedDict()
        self._capacity = capacity if hold else 0
        self._shared = shared

    async def get(self, conv: str) -> Sequence[str]:
        members = self._lists.get(conv)
        if members is not None:
            self._lists.move_to_end(conv)
            return members
        found = await self._shared.get(conv) if self._shared is not None else None
        if found is None:
            found = await self._store.member_ids(conv)
            if self._shared is not None:
                await self._shared.put(conv, found)
        members = tuple(found)
        if self._capacity:
            self._lists[conv] = members
            if len(self._lists) > self._capacity:
                self._lists.popitem(last=False)
        return members

    async def invalidate(self, conv: str) -> None:
        self._lists.pop(conv, None)
        if self._shared is not None:
            await self._shared.invalidate(conv)

    def clear(self) -> None:
        """Events of other conversations come here now: lists kept from before may be stale."""
        self._lists.clear()


class Fanout:
    def __init__(self, members: MemberCache, presence: Presence, bus: GatewayBus) -> None:
        self.members = members
        self.presence = presence
        self._bus = bus

    async def recipients(self, record: EventRecord) -> Sequence[str]:
        if record.to is not None:
            return record.to
        members = await self.members.get(record.conv)
        if record.also:
            return [*members, *(u for u in record.also if u not in members)]
        return members

    async def send(self, record: EventRecord, *, skip_user: str | None = None,
                   skip: frozenset[str] = frozenset()) -> None:
        users = await self.recipients(record)
        if skip_user is not None or skip:
            users = [u for u in users if u != skip_user and u not in skip]
        located = await self.presence.locate(users)
        t_ns = hops.stamp(record.t_ns, hops.Stage.BUS_PUBLISH)
        for gateway, here in located.items():
            await self._bus.to_gateway(gateway, Deliver(here, record.frame, t_ns))
