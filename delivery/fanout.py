"""Fan-out: event frames -> their recipients -> one message per gateway holding them.

Used by the delivery worker for batches of stored events and by the gateway for ephemeral
signals (typing, presence), so both reach people the same way. A batch costs one presence
lookup over all its recipients. The frame is encoded once, upstream; nothing here builds
anything per recipient.

Interest-based fan-out: an event for the members of a conversation of at least `min_members`
is published once on the conversation's subject (`Broadcast`), with no presence lookup; each
gateway follows the subjects of the large conversations its users' sessions belong to
(gateway/interest.py). Typing with its skip set always goes per gateway. A session that
starts following after an event was published gets it from the store: a new session calls
`sync` after `hello`, and a member added while connected is told `resync` once its gateway
follows the conversation.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import NamedTuple, Protocol

from delivery.plan import gateways_by_user, on_conv_subject, route
from parley import hops
from parley.ports import Broadcast, Deliver, GatewayBus, MessageStore, Presence
from parley.records import EventRecord


class SharedMemberLists(Protocol):
    """Member lists shared by processes (scale-out: `RedisMemberCache`)."""

    async def get(self, conv: str) -> list[str] | None: ...
    async def size(self, conv: str) -> int | None: ...  # the length of what `get` would answer
    async def put(self, conv: str, members: Sequence[str]) -> None: ...
    async def invalidate(self, conv: str) -> None: ...


class MemberCache:
    """Member lists by conversation, dropped when an event says they changed.

    Only the process that sees a conversation's events in order (delivery, which owns its
    partition) may keep lists in memory (`hold=True`). When scaled out, `shared` lists serve
    the other readers (a gateway fanning out typing): delivery drops them on the same events."""

    def __init__(self, store: MessageStore, capacity: int = 20_000, *, shared: SharedMemberLists | None = None,
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

    async def size(self, conv: str) -> int:
        """How many members `conv` has: from a list kept here or the shared length, else the
        list is read (and kept, as `get` does)."""
        members = self._lists.get(conv)
        if members is not None:
            return len(members)
        found = await self._shared.size(conv) if self._shared is not None else None
        return found if found is not None else len(await self.get(conv))

    async def invalidate(self, conv: str) -> None:
        self._lists.pop(conv, None)
        if self._shared is not None:
            await self._shared.invalidate(conv)

    def clear(self) -> None:
        """Events of other conversations come here now: lists kept from before may be stale."""
        self._lists.clear()


class ToGateway(NamedTuple):
    """One planned bus message: an event for the listed users' sessions on one gateway."""

    gateway: str
    msg: Deliver


class ToConv(NamedTuple):
    """One planned bus message: an event of a large conversation, once on its subject."""

    conv: str
    msg: Broadcast


Outgoing = ToGateway | ToConv
#: An event and the users it goes to.
Resolved = tuple[EventRecord, Sequence[str]]


class Fanout:
    def __init__(self, members: MemberCache, presence: Presence, bus: GatewayBus, *, min_members: int = 0) -> None:
        """`min_members`: see `delivery.plan.on_conv_subject` (0: every event per gateway)."""
        self.members = members
        self.presence = presence
        self._bus = bus
        self._min_members = min_members

    async def recipients(self, record: EventRecord) -> Sequence[str]:
        if record.to is not None:
            return record.to
        members = await self.members.get(record.conv)
        if record.also:
            return [*members, *(u for u in record.also if u not in members)]
        return members

    async def resolve(self, record: EventRecord, refreshed: set[str]) -> Sequence[str]:
        """A stored event's recipients. Call it in log order over a batch taken from the log, with
        one `refreshed` set (conversations) for the batch: the batch's first membership change of
        a conversation drops its cached list, so this event and the ones after it see the new
        members. Only the first: each event is stored before it is relayed, so a list read after
        the batch was taken already has the changes of all its events. Dropping it at each change
        read a mass invite's whole member list once per invited user."""
        if record.members_changed and record.conv not in refreshed:
            refreshed.add(record.conv)
            await self.members.invalidate(record.conv)
        return await self.recipients(record)

    async def plan(self, resolved: Sequence[Resolved]) -> list[Outgoing]:
        """The bus messages for `resolved`, after one presence lookup for all of those that go
        per gateway. In event order, so a gateway gets a conversation's events in log (seq)
        order (all of a large conversation's messages take its subject)."""
        routes = [(record, users, on_conv_subject(record, len(users), self._min_members)) for record, users in resolved]
        # The events of a conversation share its cached member list (the same object): each
        # distinct list is gone through once per batch, not once per event. A mass invite's
        # member.joined events (one per invited user, each for every member) went through the
        # whole list each.
        per_gateway = {id(users): users for _, users, on_conv in routes if not on_conv}
        everyone = list(dict.fromkeys(user for users in per_gateway.values() for user in users))
        where = gateways_by_user(await self.presence.locate(everyone)) if everyone else {}
        routed: dict[int, dict[str, list[str]]] = {}
        out: list[Outgoing] = []
        for record, users, on_conv in routes:
            t_ns = hops.stamp(record.t_ns, hops.Stage.BUS_PUBLISH)
            if on_conv:
                out.append(ToConv(record.conv, Broadcast(record.conv, record.frame, t_ns, record.trace)))
                continue
            by_gateway = routed.get(id(users))
            if by_gateway is None:
                by_gateway = routed[id(users)] = route(users, where)
            membership = record.conv if record.members_changed else None
            out.extend(ToGateway(gateway, Deliver(here, record.frame, membership, t_ns, record.trace))
                       for gateway, here in by_gateway.items())
        return out

    async def publish(self, out: Outgoing) -> None:
        if isinstance(out, ToConv):
            await self._bus.publish_conv(out.conv, out.msg)
        else:
            await self._bus.to_gateway(out.gateway, out.msg)

    async def send(self, record: EventRecord, *, skip_user: str | None = None,
                   skip: frozenset[str] = frozenset()) -> None:
        """An ephemeral signal, now: to the recipients except `skip_user` and `skip`."""
        users = await self.recipients(record)
        if skip_user is not None or skip:
            users = [u for u in users if u != skip_user and u not in skip]
        for out in await self.plan([(record, users)]):
            await self.publish(out)
