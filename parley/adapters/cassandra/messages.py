"""The Cassandra store's conversations, members, messages and outbox: chat_core's prefetch and
batched apply, the outbox relay's reads and checkpoints, and the gateway's and delivery's reads.

One writer per conversation (ADR 0001): new messages are claimed with a conditional batch
(`INSERT ... IF NOT EXISTS`) per (conv, bucket) partition, so a seq is stored once whatever a
stale writer believes; only then do the logged batches with idempotency keys, outbox rows,
members and cursors follow, and the heads last of all: a head in `conv_heads` means everything
of its conversation up to it is written. A writer loading a conversation derives the head
from the newest stored message, and seeds the idempotency keys of messages past the stored
head (claimed by a writer that died before its logged batch), so a retry finds its message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from contextlib import aclosing

import msgspec

from parley.adapters.cassandra.attachments import CassandraAttachments
from parley.adapters.cassandra.calls import CassandraCalls
from parley.adapters.cassandra.database import NO_LIMIT
from parley.adapters.cassandra.partitions import ID_SHIFT, IdClock, bucket_of, outbox_tb
from parley.adapters.cassandra.session import CqlSession, Row
from parley.adapters.cassandra.writes import Statement, pack, plan_writes
from parley.errors import Conflict, Unavailable
from parley.frames import Message
from parley.records import (
    ConvRow, ConvState, EventRecord, Facts, InvitationRow, MemberRow, Mutation, Needs, SanctionRow, unread_count,
)

log = logging.getLogger(__name__)

_record_decode = msgspec.msgpack.Decoder(EventRecord).decode


def _message(r: Row, conv: str) -> Message:
    return Message(conv=conv, seq=r[2], sender=r[3], ts=r[4], cmid=r[5], text=r[6], reply_to=r[7],
                   attachments=list(r[8] or []), mentions=list(r[9] or []), edited_at=r[10], deleted=bool(r[11]))


def _conv(r: Row, last_seq: int, settings: Row | None, topic: Row | None) -> ConvRow:
    """A `convs` row with its head, its `conv_settings` row (conv_id, slow_mode_s, read_only,
    allow_guests, permissions, pinned), if any: none is the defaults; and its `conv_topics` row."""
    row = ConvRow(id=r[0], kind=r[1], title=r[2], visibility=r[3], password_hash=r[4], history=r[5], owner=r[6],
                  created_at=r[7], last_seq=last_seq, topic=topic[0] if topic is not None else None)
    if settings is not None:
        row.slow_mode_s, row.read_only, row.allow_guests = int(settings[1] or 0), bool(settings[2]), bool(settings[3])
        row.permissions = {str(k): str(v) for k, v in (settings[4] or {}).items()}
        row.pinned = [int(seq) for seq in settings[5] or []]
    return row


def _sanction(conv: str, r: Row) -> SanctionRow:
    """A `sanctions` row (conv_id, user_id, kind, until, issued_by, at, reason)."""
    return SanctionRow(conv=conv, user=r[1], kind=r[2], until=int(r[3]), by=r[4], at=int(r[5]), reason=r[6])



def _members(conv: str, members: list[Row], cursors: list[Row], delivered: list[Row]) -> list[MemberRow]:
    """`members_of` rows (user, role, visible_from, joined_at) with their read and delivered cursors."""
    read = {r[0]: int(r[1] or 0) for r in cursors}
    got = {r[0]: int(r[1] or 0) for r in delivered}
    return [MemberRow(conv=conv, user=r[0], role=r[1], visible_from=r[2], read_seq=read.get(r[0], 0),
                      joined_at=r[3], delivered_seq=got.get(r[0], 0)) for r in members]

class CassandraMessages(CassandraAttachments, CassandraCalls):
    """Implements parley.ports.MessageStore (a conversation's calls come with it)."""

    def __init__(self, session: CqlSession, *, idem_ttl_s: int = 7 * 86400, outbox_ttl_s: int = 7 * 86400) -> None:
        super().__init__(session)
        self._idem_ttl_s = idem_ttl_s
        self._outbox_ttl_s = outbox_ttl_s
        self._outbox_ids = IdClock()
        #: Per shard: the largest outbox id seen in the store (see IdClock).
        self._floor: dict[int, int] = {}

    async def _head(self, conv: str) -> tuple[int, int]:
        """(stored head, newest stored seq). They differ when a writer claimed messages and
        died (or failed) before its logged batch; seqs are claimed densely from the head, so
        the newest is found by walking buckets forward until one is empty."""
        row = await self._one("head_get", [conv])
        stored = int(row[0]) if row and row[0] is not None else 0
        newest, b = stored, bucket_of(stored)
        while True:
            hit = await self._one("message_newest", [conv, b])
            if hit is None and b > bucket_of(stored):
                return stored, newest
            if hit is not None:
                newest = max(newest, int(hit[0]))
            b += 1

    # ---- chat_core ------------------------------------------------------------------------

    async def prefetch(self, needs: Needs) -> Facts:
        facts = Facts()

        async def conv(conv_id: str) -> None:
            row = await self._one("conv_get", [conv_id])
            if row is None:
                return
            # Gathers in one: asyncio.gather is typed for at most six awaitables.
            (((stored, newest), members, cursors, got, settings, sanctions), (invitations, topic),
             (call, call_settings)) = await asyncio.gather(
                asyncio.gather(
                    self._head(conv_id), self._all("members_of", [conv_id]), self._all("cursors_of", [conv_id]),
                    self._all("delivered_of", [conv_id]), self._one("settings_get", [conv_id]),
                    self._all("sanctions_of", [conv_id])),
                asyncio.gather(self._all("invitations_of", [conv_id]), self._one("topic_get", [conv_id])),
                asyncio.gather(self._live_call(conv_id), self._call_settings(conv_id)))
            state = facts.convs[conv_id] = ConvState(_conv(row, newest, settings, topic), {
                m.user: m for m in _members(conv_id, members, cursors, got)}, call=call, call_settings=call_settings)
            for r in sanctions:
                sanction = _sanction(conv_id, r)
                (state.mutes if sanction.kind == "mute" else state.bans)[sanction.user] = sanction
            for user_id, by, at in invitations:
                state.invitations[user_id] = InvitationRow(conv=conv_id, user=user_id, by=by, at=int(at))
            # A direct conversation carries the blocks between its two members.
            if state.row.kind == "direct" and len(state.members) == 2:
                first, second = sorted(state.members)
                state.blocks = await self._blocks_between(first, second)
            # Claimed past the stored head: their idempotency keys may not be written.
            for b in range(bucket_of(stored + 1), bucket_of(newest) + 1) if newest > stored else ():
                for seq, sender, ts, cmid in await self._all("message_tail", [conv_id, b, stored]):
                    facts.idem.setdefault((conv_id, sender, cmid), (int(seq), int(ts)))

        async def user(user_id: str) -> None:
            row = await self._one("user_by_id", [user_id])
            if row is not None:
                facts.users.add(user_id)
                if row[1] is not None:
                    facts.created_at[user_id] = int(row[1])

        async def idem(key: tuple[str, str, str]) -> None:
            row = await self._one("idem_get", list(key))
            if row is not None:
                facts.idem[key] = (int(row[0]), int(row[1]))

        async def message(key: tuple[str, int]) -> None:
            conv_id, seq = key
            row, edits = await asyncio.gather(self._one("message_get", [conv_id, bucket_of(seq), seq]),
                                              self._one("message_edits_get", [conv_id, bucket_of(seq), seq]))
            if row is not None:
                msg = _message(row, conv_id)
                await self._attach_reactions([msg])
                await self._attach_calls([msg])
                facts.messages[key] = msg
                if edits is not None and edits[0]:
                    facts.edits[key] = int(edits[0])

        async def attachment(attachment_id: str) -> None:
            row = await self.attachment(attachment_id)
            if row is not None:
                facts.attachments[attachment_id] = row

        async def pair(a: str, b: str) -> None:
            facts.blocks.update(await self._blocks_between(a, b))

        async def call_members(conv_id: str) -> None:
            await self._in_calls(await self.member_ids(conv_id), facts)

        pairs = sorted({(min(a, b), max(a, b)) for a, b in needs.blocks})
        await self._gather([*map(conv, sorted(needs.convs)), *map(user, sorted(needs.users | needs.accounts)),
                            *map(idem, sorted(needs.idem)), *map(message, sorted(needs.messages)),
                            *map(attachment, sorted(needs.attachments)), *(pair(a, b) for a, b in pairs),
                            self._calls(sorted(needs.calls), facts), *map(call_members, sorted(needs.call_members))])
        return facts

    async def _blocks_between(self, a: str, b: str) -> set[tuple[str, str]]:
        """(blocker, blocked) pairs between a and b, either way: two rows of `blocks`."""
        ab, ba = await asyncio.gather(self._one("block_get", [a, b]), self._one("block_get", [b, a]))
        return {p for p, found in (((a, b), ab), ((b, a), ba)) if found is not None}

    async def apply(self, mutations: Sequence[Mutation]) -> list[int]:
        plan = plan_writes(mutations, self._next_outbox_id, self._audit_rows, self._idem_ttl_s,
                           self._outbox_ttl_s)
        # 1. An idempotency key is stored once (the SQLite store's unique index).
        taken = await self._gather(self._one("idem_get", list(k)) for k in plan.idem_keys)
        if any(row is not None for row in taken):
            raise Conflict("an idempotency key of this batch is already stored")
        # 2. Claim the seqs: one conditional batch per (conv, bucket), all or nothing each.
        groups = list(plan.claims.items())
        results = await asyncio.gather(*(self._batch(items, conditional=True) for _, items in groups),
                                       return_exceptions=True)
        applied = [g for g, r in zip(groups, results) if isinstance(r, list) and r and r[0][0]]
        if len(applied) != len(groups):
            await self._unclaim([items for _, items in applied])
            err = next((r for r in results if isinstance(r, BaseException)), None)
            if err is not None:
                raise err if isinstance(err, Exception) else Unavailable("claim interrupted")
            raise Conflict("a seq of this batch is already stored")
        # 3. Everything else; then the blocks, once their mirrors are written; 4. the heads, once
        # all they cover is written.
        for phase in (plan.logged, plan.blocks, plan.heads):
            await self._gather(self._batch(chunk) for chunk in pack(phase))
        return plan.outbox_ids

    async def _unclaim(self, groups: list[list[Statement]]) -> None:
        """Take back our claims of a batch that failed elsewhere: they are ours (the claim
        applied), and only rows still holding our cmid are deleted. If this fails too, the
        messages stay as claimed-but-unconfirmed, which a loading writer handles (`_head`)."""
        for items in groups:
            undo = [("message_unclaim", [p[0], p[1], p[2], p[5]]) for _, p in items]
            try:
                await self._batch(undo, conditional=True)
            except Exception:
                log.warning("could not take back claimed seqs %s", [p[2] for _, p in items], exc_info=True)

    def _next_outbox_id(self, shard: int) -> int:
        id_ = self._outbox_ids.next(self._floor.get(shard, 0))
        self._floor[shard] = id_
        return id_

    # ---- outbox relay ---------------------------------------------------------------------

    async def outbox_after(self, shard: int, after_id: int, limit: int) -> list[tuple[int, EventRecord]]:
        # Rows up to the checkpoint are relayed: gone, as far as anyone reading is concerned
        # (SQLite deletes them; here they wait for their TTL).
        after_id = max(after_id, await self.relay_checkpoint(shard))
        oldest = outbox_tb(self._outbox_ids.now() - ((self._outbox_ttl_s * 1000) << ID_SHIFT))
        first = max(outbox_tb(after_id), oldest) if after_id else oldest
        last = outbox_tb(max(self._outbox_ids.now(), self._floor.get(shard, 0))) + 1
        out: list[tuple[int, EventRecord]] = []
        tb = first
        while tb <= last and len(out) < limit:  # a window of buckets at a time, in order
            window = range(tb, min(tb + 16, last + 1))
            pages = await self._gather(self._all("outbox_after", [shard, b, after_id, limit]) for b in window)
            for rows in pages:
                out.extend((int(i), _record_decode(rec)) for i, rec in rows)
            tb = window.stop
        out = out[:limit]
        if out:
            self._floor[shard] = max(self._floor.get(shard, 0), out[-1][0])
        return out

    async def relay_checkpoint(self, shard: int) -> int:
        row = await self._one("checkpoint_get", [shard])
        checkpoint = int(row[0]) if row and row[0] is not None else 0
        self._floor[shard] = max(self._floor.get(shard, 0), checkpoint)
        return checkpoint

    async def set_relay_checkpoint(self, shard: int, outbox_id: int) -> None:
        # Forward only, whoever writes last: a relay that lost its shard cannot undo the new
        # owner's progress. Nothing is deleted: relayed rows expire by TTL.
        if not await self._lwt("checkpoint_init", [shard, outbox_id]):
            await self._lwt("checkpoint_advance", [outbox_id, shard, outbox_id])

    # ---- reads ----------------------------------------------------------------------------

    async def _stored_head(self, conv: str) -> int:
        row = await self._one("head_get", [conv])
        return int(row[0]) if row and row[0] is not None else 0

    async def _member(self, conv: str, user: str) -> MemberRow | None:
        mrow, cur = await asyncio.gather(self._one("member_get", [conv, user]), self._one("cursor_get", [conv, user]))
        if mrow is None:
            return None
        return MemberRow(conv=conv, user=user, role=mrow[1], visible_from=mrow[2],
                         read_seq=int(cur[0]) if cur and cur[0] is not None else 0, joined_at=mrow[3])

    async def _conv_row(self, conv: str) -> ConvRow | None:
        """The conversation with its stored head, its settings and its topic."""
        row, head, settings, topic = await asyncio.gather(
            self._one("conv_get", [conv]), self._stored_head(conv), self._one("settings_get", [conv]),
            self._one("topic_get", [conv]))
        return None if row is None else _conv(row, head, settings, topic)

    async def membership(self, conv: str, user: str) -> tuple[ConvRow, MemberRow | None] | None:
        row, member = await asyncio.gather(self._conv_row(conv), self._member(conv, user))
        return None if row is None else (row, member)

    async def conv_list(self, user: str) -> list[tuple[ConvRow, MemberRow, str | None]]:
        async def one(conv: str) -> tuple[ConvRow, MemberRow, str | None] | None:
            row, member = await asyncio.gather(self._conv_row(conv), self._member(conv, user))
            if row is None or member is None:
                return None
            peer = None
            if row.kind == "direct":
                peer = next((u for u in await self.member_ids(conv) if u != user), None)
            return row, member, peer

        found = await self._gather(one(r[0]) for r in await self._all("user_convs", [user]))
        return sorted((f for f in found if f is not None), key=lambda f: (f[0].created_at, f[0].id))

    async def unread_counts(self, users: Sequence[str]) -> list[int]:
        """The users' conversations, then of each its head and each user's member row and cursor
        (three single-row reads, not conv_list's seven); a head shared by several of `users` (the
        conversation a push is about, for all of them) is read once."""
        distinct = list(dict.fromkeys(users))
        listed = await self._gather(self._all("user_convs", [u]) for u in distinct)
        pairs = [(user, row[0]) for user, rows in zip(distinct, listed) for row in rows]
        convs = list(dict.fromkeys(conv for _, conv in pairs))
        heads, members = await asyncio.gather(self._gather(self._stored_head(c) for c in convs),
                                              self._gather(self._member(c, u) for u, c in pairs))
        head_of = dict(zip(convs, heads))
        totals = dict.fromkeys(users, 0)
        for (user, conv), member in zip(pairs, members):
            if member is not None:
                totals[user] += unread_count(head_of[conv], member.read_seq, member.visible_from)
        return [totals[u] for u in users]

    async def message_pages(self, pages: Sequence[tuple[str, int, int, int, bool]]) -> list[list[Message]]:
        return await self._gather(self._page(*p) for p in pages)

    async def _page(self, conv: str, lo: int, hi: int, limit: int, newest: bool) -> list[Message]:
        _, top = await self._head(conv)
        lo, hi = max(lo, 0), min(hi, top + 1)
        out: list[Message] = []
        if lo >= hi or limit <= 0:
            return out
        buckets = range(bucket_of(hi - 1), bucket_of(lo) - 1, -1) if newest else range(bucket_of(lo), bucket_of(hi - 1) + 1)
        for b in buckets:
            rows = await self._all("messages_desc" if newest else "messages_asc", [conv, b, lo, hi, limit - len(out)])
            out.extend(_message(r, conv) for r in rows)
            if len(out) >= limit:
                break
        if newest:
            out.reverse()
        await self._attach_reactions(out)
        await self._attach_calls(out)
        return out

    async def _attach_reactions(self, msgs: Sequence[Message]) -> None:
        by_part: dict[tuple[str, int], dict[int, Message]] = {}
        for m in msgs:
            by_part.setdefault((m.conv, bucket_of(m.seq)), {})[m.seq] = m
        parts = list(by_part.items())
        found = await self._gather(self._all("reactions_in", [conv, b, min(by_seq), max(by_seq)])
                                   for (conv, b), by_seq in parts)
        for ((_, _), by_seq), rows in zip(parts, found):
            for seq, emoji, user in rows:
                msg = by_seq.get(seq)
                if msg is not None:
                    msg.reactions.setdefault(emoji, []).append(user)

    async def invitations(self, user: str) -> list[tuple[InvitationRow, ConvRow]]:
        pending = await self._all("invitations_of_user", [user])
        rows = await self._gather(self._conv_row(r[0]) for r in pending)
        found = [(InvitationRow(conv=r[0], user=user, by=r[1], at=int(r[2])), row)
                 for r, row in zip(pending, rows) if row is not None]
        return sorted(found, key=lambda f: (f[0].at, f[0].conv))

    async def member_ids(self, conv: str) -> list[str]:
        return [r[0] for r in await self._all("members_of", [conv])]

    async def block_peers(self, user: str) -> set[str]:
        """The users `user` blocks (`blocks`) and those who block `user` (`blocked_by`)."""
        blocks, blockers = await asyncio.gather(self._all("blocks_by", [user]), self._all("blockers_of", [user]))
        return {r[0] for r in blocks} | {r[0] for r in blockers}

    async def sanctions(self, conv: str) -> list[SanctionRow]:
        found = [_sanction(conv, r) for r in await self._all("sanctions_of", [conv])]
        return sorted(found, key=lambda s: (s.at, s.user, s.kind))

    # ---- admin inspection -----------------------------------------------------------------

    async def conv_members(self, conv: str) -> tuple[ConvRow, list[MemberRow]] | None:
        row, members, cursors, got = await asyncio.gather(
            self._conv_row(conv), self._all("members_of", [conv]), self._all("cursors_of", [conv]),
            self._all("delivered_of", [conv]))
        if row is None:
            return None
        return row, sorted(_members(conv, members, cursors, got), key=lambda m: (m.joined_at, m.user))

    async def sent_messages(self, user: str, conv: str, after_seq: int, limit: int) -> list[Message]:
        """Walks the conversation's messages after `after_seq` in order and keeps the sender's:
        there is no index by sender, so a call costs the messages it passes over, not the ones
        it returns (a caller paging with `after_seq` passes over each message once). A table
        keyed by (conv, sender, bucket) would cost one more write per message on chat_core's
        hot path and miss every message written before it; the privacy export and deletion
        that read this are rare."""
        out: list[Message] = []
        if limit <= 0:
            return out
        _, top = await self._head(conv)
        lo = max(after_seq, 0) + 1
        for b in range(bucket_of(lo), bucket_of(top) + 1) if lo <= top else ():
            async with aclosing(self._rows("messages_asc", [conv, b, lo, top + 1, NO_LIMIT], fetch_size=500)) as rows:
                async for r in rows:
                    if r[3] == user:
                        out.append(_message(r, conv))
                        if len(out) >= limit:
                            break
            if len(out) >= limit:
                break
        await self._attach_reactions(out)
        await self._attach_calls(out)
        return out
