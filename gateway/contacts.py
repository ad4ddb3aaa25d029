"""Presence between people who share a conversation: `presence` events when a user's first
session here opens and after their last one closes, and the `presence` request.

Shared only in direct chats and groups of at most PRESENCE_MAX_MEMBERS members: in a channel or
a crowd, thousands of online/offline events per login would cost more than they tell. Presence
rides the bus only (no log, no store), like typing.
"""

from __future__ import annotations

import asyncio
import logging
import time

from delivery.fanout import Fanout
from gateway.reads import BlockCache
from parley.events import PresenceChanged, UserPresence, encode_event
from parley.limits import PRESENCE_MAX_MEMBERS
from parley.ports import MessageStore
from parley.records import EventRecord

log = logging.getLogger(__name__)

#: Announcements in progress per gateway. They are best effort and read member lists from the
#: shared state's pool: when thousands of sessions come or go at once (a gateway restarted),
#: unbounded they took every pooled connection, and sends waiting for their rate-limit check
#: were answered `unavailable`.
ANNOUNCING_AT_ONCE = 16


class Contacts:
    def __init__(self, store: MessageStore, fanout: Fanout, blocks: BlockCache) -> None:
        self._store = store
        self._fanout = fanout
        self._blocks = blocks
        self._slots = asyncio.Semaphore(ANNOUNCING_AT_ONCE)
        self._announcing: set[asyncio.Task[None]] = set()

    async def of(self, user: str) -> set[str]:
        """Everyone presence is shared with: direct peers and members of small groups, except
        whoever the user blocks or is blocked by."""
        found: set[str] = set()
        for row, _, peer in await self._store.conv_list(user):
            if row.kind == "direct" and peer is not None:
                found.add(peer)
            elif row.kind == "group":
                members = await self._fanout.members.get(row.id)
                if len(members) <= PRESENCE_MAX_MEMBERS:
                    found.update(members)
        found.discard(user)
        return found - await self._blocks.peers(user)

    def announce(self, user: str, online: bool) -> None:
        """Best effort, like typing (a client that missed it asks with `presence`), and in the
        background: the session goes on at once."""
        task = asyncio.get_running_loop().create_task(self._announce(user, online, int(time.time() * 1000)))
        self._announcing.add(task)
        task.add_done_callback(self._announcing.discard)

    async def _announce(self, user: str, online: bool, at_ms: int) -> None:
        async with self._slots:
            try:
                to = sorted(await self.of(user))
                if not to:
                    return
                event = PresenceChanged(user=user, status="online" if online else "offline",
                                        last_seen=None if online else at_ms)
                await self._fanout.send(EventRecord("", encode_event(event), to=to))
            except Exception:
                log.warning("presence of %s not announced", user, exc_info=True)

    async def stop(self) -> None:
        """Drop what is not announced yet (shutdown)."""
        for task in list(self._announcing):
            task.cancel()
        await asyncio.gather(*self._announcing, return_exceptions=True)

    async def status(self, asker: str, users: list[str]) -> list[UserPresence]:
        shared = await self.of(asker)
        asked = [u for u in dict.fromkeys(users) if u in shared]
        online = {u for here in (await self._fanout.presence.locate(asked)).values() for u in here}
        return [UserPresence(user=u, status="online" if u in online else "offline") for u in asked]
