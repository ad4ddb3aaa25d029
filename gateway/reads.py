"""The read path, served by the gateway straight from the store: conv.list, history, sync,
invite.list."""

from __future__ import annotations

import time
from collections import OrderedDict

from moderation import policy
from moderation.policy import Action
from parley.errors import NotFound
from parley.events import ConvSync, Invitation
from parley.frames import ConvView, History, Message
from parley.limits import SYNC_PAGE
from parley.ports import MessageStore
from parley.records import ConvRow, MemberRow, conv_view

_END = 2**62  # an exclusive upper bound above any seq


class Reads:
    def __init__(self, store: MessageStore) -> None:
        self._store = store
        self.blocks = BlockCache(store)

    async def readable(self, conv: str, user: str) -> tuple[ConvRow, MemberRow]:
        found = await self._store.membership(conv, user)
        if found is None:
            raise NotFound("no such conversation")
        row, member = found
        return row, policy.authorize(row, member, Action.READ)

    async def conv_list(self, user: str) -> list[ConvView]:
        return [conv_view(row, member, peer) for row, member, peer in await self._store.conv_list(user)]

    async def invitations(self, user: str) -> list[Invitation]:
        """`user`'s pending invitations, except those from someone they block or who blocks
        them: blocks win over invitations."""
        pending = await self._store.invitations(user)
        if not pending:
            return []
        blocked = await self.blocks.peers(user)
        return [Invitation(conv=row.id, kind=row.kind, title=row.title, by=invitation.by, at=invitation.at)
                for invitation, row in pending if invitation.by not in blocked]

    async def history(self, user: str, req: History) -> list[Message]:
        _, member = await self.readable(req.conv, user)
        lo = member.visible_from
        if req.after is not None:
            page = (req.conv, max(lo, req.after + 1), _END, req.limit, False)
        else:
            page = (req.conv, lo, req.before if req.before is not None else _END, req.limit, True)
        (messages,) = await self._store.message_pages([page])
        return messages

    async def sync(self, user: str, since: dict[str, int]) -> list[ConvSync]:
        behind = [(row, member) for row, member, _ in await self._store.conv_list(user)
                  if row.last_seq > since.get(row.id, 0)]
        pages = [(row.id, max(since.get(row.id, 0) + 1, member.visible_from), _END, SYNC_PAGE + 1, False)
                 for row, member in behind]
        out = []
        for (row, member), messages in zip(behind, await self._store.message_pages(pages)):
            view = conv_view(row, member)
            out.append(ConvSync(conv=row.id, last_seq=row.last_seq, read_seq=view.read_seq, unread=view.unread,
                                messages=messages[:SYNC_PAGE], more=len(messages) > SYNC_PAGE))
        return out


class BlockCache:
    """Who each user blocks or is blocked by, for hiding typing (and, later, presence) between
    them. Cached for `ttl_s`: a block reaches the other side's typing within that time; the
    blocker's own entry is dropped at once when they send user.block/unblock through here."""

    def __init__(self, store: MessageStore, ttl_s: float = 10.0, capacity: int = 50_000) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._capacity = capacity
        self._peers: OrderedDict[str, tuple[float, frozenset[str]]] = OrderedDict()

    async def peers(self, user: str) -> frozenset[str]:
        now = time.monotonic()
        cached = self._peers.get(user)
        if cached is not None and cached[0] > now:
            return cached[1]
        peers = frozenset(await self._store.block_peers(user))
        self._peers[user] = (now + self._ttl_s, peers)
        self._peers.move_to_end(user)
        if len(self._peers) > self._capacity:
            self._peers.popitem(last=False)
        return peers

    def forget(self, user: str) -> None:
        self._peers.pop(user, None)
