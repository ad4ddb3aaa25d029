"""The read path, served by the gateway straight from the store: conv.list (with each
conversation's newest message and the profiles to show it), conv.members, conv.sanctions,
receipts, history, sync, invite.list."""

from __future__ import annotations

import time
from collections import OrderedDict

import msgspec

from chat_core.decide import shown_until
from moderation import policy
from moderation.policy import Action
from parley import events as E
from parley.errors import Forbidden, NotFound
from parley.events import ConvListItem, ConvSync, Invitation, LastMessage
from parley.frames import ConvMembers, ConvSanctions, ConvView, History, Message
from parley.limits import CONV_LIST_PROFILES_MAX, SYNC_PAGE
from parley.ports import MessageStore, Store
from parley.previews import preview
from parley.profiles import Profile, public_profile
from parley.records import ConvRow, MemberRow, SanctionRow, conv_view

_END = 2**62  # an exclusive upper bound above any seq
#: What a sanction kind needs of whoever lifts it (and so may see it).
_LIFTS = {"mute": Action.MUTE, "ban": Action.BAN}


class Reads:
    def __init__(self, store: Store, receipts_max_members: int) -> None:
        self._store = store
        self._receipts_max_members = receipts_max_members
        self.blocks = BlockCache(store)

    async def readable(self, conv: str, user: str) -> tuple[ConvRow, MemberRow]:
        found = await self._store.membership(conv, user)
        if found is None:
            raise NotFound("no such conversation")
        row, member = found
        return row, policy.authorize(row, member, Action.READ)

    async def conv_list(self, user: str) -> tuple[list[ConvListItem], dict[str, Profile]]:
        """The caller's conversations, each with its newest visible message (one batched read),
        and the profiles of the direct peers and last senders (at most CONV_LIST_PROFILES_MAX)."""
        found = await self._store.conv_list(user)
        pages = [(row.id, member.visible_from, _END, 1, True) for row, member, _ in found]
        items: list[ConvListItem] = []
        people: dict[str, None] = {}  # ordered: peers and senders of the list's first conversations first
        for (row, member, peer), newest in zip(found, await self._store.message_pages(pages)):
            last = _last_message(newest[-1]) if newest else None
            items.append(ConvListItem(**msgspec.structs.asdict(conv_view(row, member, peer)), last_message=last))
            for someone in (peer, last.sender if last else None):
                if someone is not None and someone != user:
                    people[someone] = None
        return items, await self.profiles(list(people)[:CONV_LIST_PROFILES_MAX])

    async def profiles(self, users: list[str]) -> dict[str, Profile]:
        return {a.id: public_profile(a) for a in await self._store.accounts(users)} if users else {}

    async def members(self, user: str, req: ConvMembers, now: int) -> E.MembersResult:
        """A page of the members; the caller's own entry says until when they are muted (at `now`)."""
        await self.readable(req.conv, user)
        found = await self._store.conv_members(req.conv)
        if found is None:
            raise NotFound("no such conversation")
        rows = sorted((m for m in found[1] if req.after is None or m.user > req.after), key=lambda m: m.user)
        page = rows[:req.limit]
        infos = [E.MemberInfo(m.user, m.role, m.joined_at) for m in page]
        for info in infos:
            if info.user == user:  # the sanctions are read only for the page that holds the caller
                mutes, _ = in_force(await self._store.sanctions(req.conv), {"mute"}, now)
                info.muted_until = next((s.until for s in mutes if s.user == user), msgspec.UNSET)
        return E.MembersResult(rid=req.rid, members=infos,
                               profiles=await self.profiles([m.user for m in page]), more=len(rows) > req.limit)

    async def sanctions(self, user: str, req: ConvSanctions, now: int) -> E.SanctionsResult:
        """The mutes and bans in force at `now` that `user` may lift: mutes for those who may mute,
        bans for those who may ban; Forbidden for a member who may do neither."""
        row, member = await self.readable(req.conv, user)
        kinds = {kind for kind, action in _LIFTS.items() if policy.may(row, member, action)}
        if not kinds:
            raise Forbidden("only those who may mute or ban members see the mutes and bans", rule="role")
        mutes, bans = in_force(await self._store.sanctions(req.conv), kinds, now)
        return E.SanctionsResult(rid=req.rid, mutes=mutes, bans=bans,
                                 profiles=await self.profiles(sorted({s.user for s in mutes + bans})))

    async def receipts(self, user: str, rid: str, conv: str, seq: int) -> E.ReceiptsResult:
        row, _ = await self.readable(conv, user)
        found = await self._store.conv_members(conv)
        members = [m for m in (found[1] if found else []) if m.user != user]
        named = row.kind != "channel" and len(members) + 1 <= self._receipts_max_members
        return tally_receipts(rid, conv, seq, members, named)

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


def tally_receipts(rid: str, conv: str, seq: int, members: list[MemberRow], named: bool) -> E.ReceiptsResult:
    """Who has `seq` delivered (reading implies receiving) and read, by name or only counted. Pure."""
    delivered = sorted(m.user for m in members if max(m.delivered_seq, m.read_seq) >= seq)
    read = sorted(m.user for m in members if m.read_seq >= seq)
    return E.ReceiptsResult(rid=rid, conv=conv, seq=seq, members=len(members), delivered_count=len(delivered),
                            read_count=len(read), delivered=delivered if named else None,
                            read=read if named else None)


def in_force(sanctions: list[SanctionRow], kinds: set[str], now: int) -> tuple[list[E.SanctionInfo],
                                                                              list[E.SanctionInfo]]:
    """(mutes, bans) of `kinds` that have not ended by `now`, in the order given. Pure."""
    shown: dict[str, list[E.SanctionInfo]] = {"mute": [], "ban": []}
    for s in sanctions:
        if s.kind in kinds and s.until > now:
            shown[s.kind].append(E.SanctionInfo(user=s.user, until=shown_until(s.until), by=s.by, at=s.at,
                                                reason=s.reason))
    return shown["mute"], shown["ban"]


def _last_message(msg: Message) -> LastMessage:
    return LastMessage(seq=msg.seq, ts=msg.ts, sender=msg.sender, preview=preview(msg),
                       attachments=len(msg.attachments), deleted=msg.deleted)


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
