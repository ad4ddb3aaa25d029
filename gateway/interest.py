"""Which conversation subjects this gateway follows: those of the large conversations (at least
`min_members` members, as delivery decides) that its users' sessions belong to.

A user's first session here makes the gateway look up their large conversations before `hello`
is answered; their last session leaving drops them. A membership change of a conversation
(a `Deliver` carrying `membership`: join, leave, kick, ban, a conversation growing past the
threshold or shrinking below it) makes it read the members again and follow or stop following.
`Broadcast`s reach only the local sessions of members, from the sets kept here; those that
arrive while a change of their conversation is being applied wait for it, so an event after a
removal never reaches the removed member. That holds in process, and on NATS as far as the
gateway handles the change (its own subject) before the next broadcast (the conversation's):
delivery publishes them in that order on one connection and nats-py queues them in arrival
order, but two subscriptions' callbacks are two tasks, so this is the usual order, not a promise.

The race: events published on a subject before the gateway follows it are not delivered here.
A new session catches up with the `sync` it calls after `hello` (the store is the source of
truth); a user who becomes a member while connected is sent `resync` for the conversation once
the gateway follows it, and syncs. Changes are applied one at a time, each from a fresh read,
so the last one applied reflects the store and a removed member stops hearing the conversation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from parley.backoff import wait_out
from parley.errors import Unavailable
from parley.events import Resync, encode_event
from parley.ports import ConvSubscriptions, MessageStore

log = logging.getLogger(__name__)

#: Broadcasts held per conversation while a change is applied; past it they are dropped and the
#: members told `resync` (a store that answers slowly must not grow the gateway without bound).
HELD_MAX = 10_000
#: Member lists read at once for connecting users: a gateway that comes back has thousands of
#: users reconnecting, each in dozens of conversations, and one Redis pool for all of it.
READS_AT_ONCE = 32


@dataclass(slots=True)
class Change:
    """What following a conversation's new member set needs done."""

    follow: bool = False
    unfollow: bool = False
    #: Local users who became followed members: they may have missed events, so `resync`.
    arrived: set[str] = field(default_factory=set)


class Interest:
    """The bookkeeping, pure: local users by followed conversation, and the reverse."""

    def __init__(self) -> None:
        self._members: dict[str, set[str]] = {}
        self._convs: dict[str, set[str]] = {}

    def members_here(self, conv: str) -> Collection[str]:
        return self._members.get(conv, ())

    def add(self, user: str, convs: Iterable[str]) -> list[str]:
        """`user` is a member of the large conversations `convs`: those newly followed."""
        followed = []
        for conv in convs:
            members = self._members.setdefault(conv, set())
            if not members:
                followed.append(conv)
            members.add(user)
            self._convs.setdefault(user, set()).add(conv)
        return followed

    def drop(self, user: str) -> list[str]:
        """`user` has no session here any more: the conversations no longer followed."""
        unfollowed = []
        for conv in self._convs.pop(user, ()):
            members = self._members[conv]
            members.discard(user)
            if not members:
                del self._members[conv]
                unfollowed.append(conv)
        return unfollowed

    def update(self, conv: str, here: set[str]) -> Change:
        """`here`: the local users who are members of `conv` now (empty if it is not large)."""
        before = self._members.get(conv, set())
        change = Change(follow=bool(here) and not before, unfollow=bool(before) and not here,
                        arrived=here - before)
        for user in before - here:
            self._convs[user].discard(conv)
            if not self._convs[user]:
                del self._convs[user]
        for user in change.arrived:
            self._convs.setdefault(user, set()).add(conv)
        if here:
            self._members[conv] = set(here)
        else:
            self._members.pop(conv, None)
        return change


class MemberLists(Protocol):
    """`delivery.fanout.MemberCache`: the lists delivery keeps current."""

    async def get(self, conv: str) -> Sequence[str]: ...
    async def size(self, conv: str) -> int: ...


class LocalSessions(Protocol):
    """The hub: who has a session here, and writing a frame to their sessions."""

    def users(self) -> Collection[str]: ...
    def push_to(self, users: Iterable[str], frame: bytes) -> None: ...


class ConvFollower:
    """Keeps the subscriptions and `Interest` in step with sessions and membership changes."""

    def __init__(self, subscriptions: ConvSubscriptions, members: MemberLists, store: MessageStore,
                 local: LocalSessions, min_members: int) -> None:
        self._subscriptions = subscriptions
        self._members = members
        self._store = store
        self._local = local
        self._min_members = min_members
        self.interest = Interest()
        # One change at a time: each reads the store afresh, so the last applied is current.
        self._lock = asyncio.Lock()
        self._changed: asyncio.Queue[str] = asyncio.Queue()
        #: Changes received per conversation not yet applied (a count), and the broadcasts held
        #: meanwhile. A burst of changes (a mass invite) is applied once: each apply reads it all.
        self._pending: dict[str, int] = {}
        self._held: dict[str, list[bytes]] = {}
        self._dropped: set[str] = set()
        #: Membership changes received so far (a connect checks it did not miss one).
        self._changes = 0
        self._reading = asyncio.Semaphore(READS_AT_ONCE)

    async def connected(self, user: str) -> None:
        """The user's first session here (before `hello` is answered). Raises Unavailable.

        The reads run outside the lock and concurrently, so the users of a gateway that comes
        back all reconnect at once instead of one after another. They are read again under the
        lock if a membership change came in meanwhile: a change applied while they ran must not
        be undone by what they read before it."""
        changes = self._changes
        large = await self._large_convs(user)
        async with self._lock:
            if self._changes != changes:
                large = await self._large_convs(user)
            for conv in self.interest.add(user, large):
                await self._subscriptions.join_conv(conv)

    async def _large_convs(self, user: str) -> list[str]:
        # Direct chats have two members: never large (min_members >= 3).
        convs = [row.id for row, _, _ in await self._store.conv_list(user) if row.kind != "direct"]
        sizes = await asyncio.gather(*map(self._size, convs))
        return [conv for conv, size in zip(convs, sizes) if size >= self._min_members]

    async def _size(self, conv: str) -> int:
        async with self._reading:
            return await self._members.size(conv)

    async def disconnected(self, user: str) -> None:
        """After the user's last session here."""
        async with self._lock:
            for conv in self.interest.drop(user):
                await self._subscriptions.leave_conv(conv)

    def changed(self, conv: str) -> None:
        """The members of `conv` changed (called from the bus handler; applied by `run`)."""
        self._changes += 1
        if conv not in self._pending:
            self._changed.put_nowait(conv)
        self._pending[conv] = self._pending.get(conv, 0) + 1

    def broadcast(self, conv: str, frame: bytes) -> None:
        """An event of a followed conversation, for the local sessions of its members."""
        if conv not in self._pending:
            self._local.push_to(self.interest.members_here(conv), frame)
            return
        held = self._held.setdefault(conv, [])
        if len(held) < HELD_MAX:
            held.append(frame)
        else:
            self._dropped.add(conv)

    async def run(self) -> None:
        while True:
            conv = await self._changed.get()
            seen = self._pending[conv]
            try:
                async with self._lock:
                    await self._apply(conv)
            except Unavailable as err:
                await wait_out(err, log, f"following {conv}")
                self._changed.put_nowait(conv)
                continue
            except Exception:
                log.exception("following %s failed", conv)
            self._applied(conv, seen)

    def _applied(self, conv: str, seen: int) -> None:
        """Once every change received is applied, the held broadcasts go to the members now;
        a change that came in during the apply needs another."""
        if self._pending[conv] != seen:
            self._changed.put_nowait(conv)
            return
        del self._pending[conv]
        members = self.interest.members_here(conv)
        for frame in self._held.pop(conv, ()):
            self._local.push_to(members, frame)
        if conv in self._dropped:
            self._dropped.discard(conv)
            self._local.push_to(members, encode_event(Resync(conv=conv)))

    async def _apply(self, conv: str) -> None:
        members = await self._members.get(conv)
        local = self._local.users()
        here = {u for u in members if u in local} if len(members) >= self._min_members else set()
        change = self.interest.update(conv, here)
        if change.follow:
            await self._subscriptions.join_conv(conv)
        if change.unfollow:
            await self._subscriptions.leave_conv(conv)
        if change.arrived:  # after the join: what they hear from now on comes through it
            self._local.push_to(change.arrived, encode_event(Resync(conv=conv)))

