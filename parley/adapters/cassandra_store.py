"""The scale-out message store: Cassandra or ScyllaDB (data model in ARCHITECTURE.md, schema in
parley/migrations/cassandra, every statement in parley/adapters/cassandra/statements.py).

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
import random
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Iterable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec

from parley.adapters.cassandra.session import ClusterSettings, CqlSession, DriverSession, Row
from parley.errors import Conflict, Forbidden, Unavailable
from parley.frames import Message
from parley.records import (
    Account, AccountPatch, AccountQuery, AttachmentRow, AuditEntry, AuditQuery, ConvRow, ConvState, CreateConv,
    DropBlock, DropMember, DropSanction, EventRecord, Facts, InsertMessage, Invite, MemberRow, Mutation, Needs,
    PutAudit, PutBlock, PutMember, PutOutbox, PutSanction, Report, ReportQuery, SanctionRow, SetConvHead, SetConvOwner,
    SetReaction, SetReadSeq, UpdateConv, UpdateMessage,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Messages per partition: bucket = seq // MESSAGE_BUCKET (ARCHITECTURE.md).
MESSAGE_BUCKET = 16384
#: Outbox partitions are (shard, time bucket of the id), ten minutes each.
OUTBOX_BUCKET_MS = 600_000
#: Ids are (ms since ID_EPOCH_MS) << ID_SHIFT | a counter: time-ordered, ~2^22 ids per ms.
ID_EPOCH_MS = 1_577_836_800_000  # 2020-01-01
ID_SHIFT = 22
DAY_MS = 86_400_000
#: Logged batches spanning partitions are refused past 50 KiB by default
#: (batch_size_fail_threshold); stay well below it.
BATCH_BYTES = 32_000
BATCH_STATEMENTS = 200
_IN_FLIGHT = 64  # concurrent requests of one store call

_record_encode = msgspec.msgpack.Encoder().encode
_record_decode = msgspec.msgpack.Decoder(EventRecord).decode
_details_encode = msgspec.json.Encoder().encode
_details_decode = msgspec.json.Decoder(dict[str, str | int | bool | None]).decode
_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.Decoder().decode

#: Reports per partition of `reports`: bucket = id // REPORT_BUCKET.
REPORT_BUCKET = 4096
#: Usernames are clustered in partitions named by their first NAME_BUCKET_CHARS characters.
NAME_BUCKET_CHARS = 2
#: Rounds of a compare-and-set loop (report ids, account updates) before giving up.
CAS_ROUNDS = 32
_NO_LIMIT = 2**31 - 1
_PAGE = 200


class _Filed(msgspec.Struct):
    """What a report was filed with: written once, stored as the JSON blob `reports.filed`."""

    at: int
    reporter: str
    kind: str
    target_user: str
    reason: str
    conv: str | None = None
    seq: int | None = None
    excerpt: str | None = None


_filed_encode = msgspec.json.Encoder().encode
_filed_decode = msgspec.json.Decoder(_Filed).decode


def bucket_of(seq: int) -> int:
    return seq // MESSAGE_BUCKET


def id_ms(id_: int) -> int:
    """The wall-clock ms an id was made at."""
    return (id_ >> ID_SHIFT) + ID_EPOCH_MS


def outbox_tb(id_: int) -> int:
    return id_ms(id_) // OUTBOX_BUCKET_MS


class IdClock:
    """Time-ordered int ids: (ms since 2020) << 22 | counter, strictly increasing per clock.

    Outbox ids must increase within a shard in write order. A shard has one writer, the
    chat_core owning its log partition, and that writer's clock makes every id larger than the
    last it made. A new owner could run on a host whose clock is behind the old owner's, so a
    clock also never goes below a floor: the largest id the store has seen in the shard (its
    checkpoint and the rows replayed when the relay adopts the shard, which it does before the
    writer decides any command of the partition). So a replay past the checkpoint finds every
    row written after it.
    """

    def __init__(self) -> None:
        self._last = 0

    def next(self, floor: int = 0) -> int:
        now = (int(time.time() * 1000) - ID_EPOCH_MS) << ID_SHIFT
        self._last = max(now, self._last + 1, floor + 1)
        return self._last

    def now(self) -> int:
        return (int(time.time() * 1000) - ID_EPOCH_MS) << ID_SHIFT


# ---- what one `apply` writes, planned without I/O ------------------------------------------------


Statement = tuple[str, list[Any]]


@dataclass
class WritePlan:
    """The statements of one batch of mutations, in the order they must be written."""

    #: (conv, bucket) -> message_claim statements: one conditional batch each.
    claims: dict[tuple[str, int], list[Statement]] = field(default_factory=dict)
    #: Idempotency keys of the new messages, checked before the claims.
    idem_keys: list[tuple[str, str, str]] = field(default_factory=list)
    #: Everything else but the blocks and the heads, in logged batches.
    logged: list[Statement] = field(default_factory=list)
    #: Rows of `blocks`, written once `logged` (holding their mirrors in `blocked_by`) is: chat_core
    #: decides from `blocks`, so a block it sees is never missing from `blocked_by`, and a retry
    #: after a failure in between writes both again.
    blocks: list[Statement] = field(default_factory=list)
    #: The heads: written last, once everything they cover is.
    heads: list[Statement] = field(default_factory=list)
    outbox_ids: list[int] = field(default_factory=list)


def _message_params(m: Message) -> list[Any]:
    return [m.conv, bucket_of(m.seq), m.seq, m.sender, m.ts, m.cmid, m.text, m.reply_to, list(m.attachments) or None,
            list(m.mentions) or None, m.edited_at, m.deleted]


def plan_writes(mutations: Sequence[Mutation], next_outbox_id: Any, audit_rows: Any, idem_ttl_s: int,
                outbox_ttl_s: int) -> WritePlan:
    """Collapse a batch into its final writes. Cassandra gives every statement of a batch one
    timestamp, and on a tie a deletion wins: a leave then a rejoin must become one insert, an
    edit of a message sent in the same batch part of its insert. Raises Conflict for a seq or
    idempotency key used twice in the batch."""
    plan = WritePlan()
    convs: dict[str, ConvRow] = {}
    owners: dict[str, str] = {}
    heads: dict[str, int] = {}
    members: dict[tuple[str, str], MemberRow | None] = {}
    cursors: dict[tuple[str, str], int] = {}
    inserts: dict[tuple[str, int], Message] = {}
    updates: dict[tuple[str, int], UpdateMessage] = {}
    reactions: dict[tuple[str, int, str, str], bool] = {}
    idem: set[tuple[str, str, str]] = set()
    settings: dict[str, ConvRow] = {}
    sanctions: dict[tuple[str, str, str], SanctionRow | None] = {}
    blocks: dict[tuple[str, str], int | None] = {}
    for m in mutations:
        if isinstance(m, CreateConv):
            convs[m.row.id] = msgspec.structs.replace(m.row)
            heads[m.row.id] = max(heads.get(m.row.id, 0), m.row.last_seq)
        elif isinstance(m, SetConvOwner):
            if m.conv in convs:
                convs[m.conv].owner = m.owner
            else:
                owners[m.conv] = m.owner
        elif isinstance(m, SetConvHead):
            heads[m.conv] = max(heads.get(m.conv, 0), m.last_seq)
        elif isinstance(m, PutMember):
            members[(m.row.conv, m.row.user)] = m.row
            key = (m.row.conv, m.row.user)
            cursors[key] = max(cursors.get(key, 0), m.row.read_seq)
        elif isinstance(m, DropMember):
            members[(m.conv, m.user)] = None
        elif isinstance(m, SetReadSeq):
            cursors[(m.conv, m.user)] = max(cursors.get((m.conv, m.user), 0), m.read_seq)
        elif isinstance(m, InsertMessage):
            msg = m.message
            key3 = (msg.conv, msg.sender, msg.cmid)
            if (msg.conv, msg.seq) in inserts or key3 in idem:
                raise Conflict(f"seq {msg.seq} or cmid {msg.cmid!r} used twice in one batch")
            inserts[(msg.conv, msg.seq)] = msgspec.structs.replace(msg)
            idem.add(key3)
        elif isinstance(m, UpdateMessage):
            new = inserts.get((m.conv, m.seq))
            if new is not None:
                new.text, new.edited_at, new.deleted = m.text, m.edited_at, m.deleted
                if m.deleted:
                    new.attachments = []
            else:
                prior = updates.get((m.conv, m.seq))
                deleted = m.deleted or (prior is not None and prior.deleted)
                updates[(m.conv, m.seq)] = UpdateMessage(m.conv, m.seq, m.text, m.edited_at, deleted)
        elif isinstance(m, SetReaction):
            reactions[(m.conv, m.seq, m.emoji, m.user)] = m.on
        elif isinstance(m, PutOutbox):
            id_ = next_outbox_id(m.shard)
            plan.outbox_ids.append(id_)
            plan.logged.append(("outbox_put", [m.shard, outbox_tb(id_), id_, _record_encode(m.record), outbox_ttl_s]))
        elif isinstance(m, PutAudit):
            plan.logged.extend(audit_rows([m.entry]))
        elif isinstance(m, UpdateConv):
            created = convs.get(m.row.id)
            if created is not None:  # created in this batch: one insert with the final settings
                _copy_settings(m.row, created)
            else:
                settings[m.row.id] = msgspec.structs.replace(m.row)
        elif isinstance(m, PutSanction):
            sanctions[(m.row.conv, m.row.user, m.row.kind)] = msgspec.structs.replace(m.row)
        elif isinstance(m, DropSanction):
            sanctions[(m.conv, m.user, m.kind)] = None
        elif isinstance(m, PutBlock):
            blocks[(m.blocker, m.blocked)] = m.at
        elif isinstance(m, DropBlock):
            blocks[(m.blocker, m.blocked)] = None
        else:  # pragma: no cover - the Mutation union is closed
            raise TypeError(f"unknown mutation {type(m).__name__}")

    for (conv, seq), msg in sorted(inserts.items()):
        plan.claims.setdefault((conv, bucket_of(seq)), []).append(("message_claim", _message_params(msg)))
        plan.idem_keys.append((conv, msg.sender, msg.cmid))
        plan.logged.append(("idem_put", [conv, msg.sender, msg.cmid, seq, msg.ts, idem_ttl_s]))
    for row in convs.values():
        plan.logged.append(("conv_insert", [row.id, row.kind, row.title, row.visibility, row.password_hash,
                                            row.history, row.owner, row.created_at]))
        if _has_settings(row):  # no row reads as the defaults
            plan.logged.append(("settings_put", _settings_params(row)))
    for row in settings.values():  # written whole: the settings after this batch
        plan.logged += [("conv_update", [row.title, row.visibility, row.password_hash, row.history, row.id]),
                        ("settings_put", _settings_params(row))]
    for (conv, user, kind), srow in sanctions.items():
        if srow is None:
            plan.logged.append(("sanction_drop", [conv, user, kind]))
        else:
            plan.logged.append(("sanction_put", [conv, user, kind, srow.until, srow.by, srow.at, srow.reason]))
    for (blocker, blocked), at in blocks.items():
        if at is None:
            plan.logged.append(("blocked_by_drop", [blocked, blocker]))
            plan.blocks.append(("block_drop", [blocker, blocked]))
        else:
            plan.logged.append(("blocked_by_put", [blocked, blocker, at]))
            plan.blocks.append(("block_put", [blocker, blocked, at]))
    plan.logged.extend(("conv_set_owner", [owner, conv]) for conv, owner in owners.items())
    for (conv, user), mrow in members.items():
        if mrow is None:
            plan.logged += [("member_drop", [conv, user]), ("user_conv_drop", [user, conv])]
        else:
            plan.logged += [("member_put", [conv, user, mrow.role, mrow.visible_from, mrow.joined_at]),
                            ("user_conv_put", [user, conv])]
    # Cursors and heads only move forward: their write timestamp is the value itself.
    plan.logged.extend(("cursor_set", [seq, seq, conv, user]) for (conv, user), seq in cursors.items())
    for (conv, seq), u in updates.items():
        if u.deleted:
            plan.logged.append(("message_delete", [None, u.edited_at, True, None, conv, bucket_of(seq), seq]))
        else:
            plan.logged.append(("message_edit", [u.text, u.edited_at, False, conv, bucket_of(seq), seq]))
    for (conv, seq, emoji, user), on in reactions.items():
        plan.logged.append(("reaction_put" if on else "reaction_drop", [conv, bucket_of(seq), seq, emoji, user]))
    plan.heads = [("head_set", [seq, seq, conv]) for conv, seq in sorted(heads.items())]
    return plan


_SETTINGS = ("title", "visibility", "password_hash", "history", "slow_mode_s", "read_only", "allow_guests",
             "permissions", "pinned")


def _copy_settings(src: ConvRow, dst: ConvRow) -> None:
    """What UpdateConv writes: the settings, not the head or the owner."""
    for name in _SETTINGS:
        value = getattr(src, name)
        setattr(dst, name, dict(value) if isinstance(value, dict) else list(value) if isinstance(value, list)
                else value)


def _has_settings(r: ConvRow) -> bool:
    return bool(r.slow_mode_s or r.read_only or r.allow_guests or r.permissions or r.pinned)


def _settings_params(r: ConvRow) -> list[Any]:
    # Empty collections are bound as null: Cassandra reads an empty collection back as null anyway.
    return [r.id, r.slow_mode_s, r.read_only, r.allow_guests, dict(r.permissions) or None, list(r.pinned) or None]


def _size(params: Sequence[Any]) -> int:
    return 16 + sum(len(p) if isinstance(p, (str, bytes)) else 8 for p in params if p is not None)


def pack(statements: Sequence[Statement], max_bytes: int = BATCH_BYTES,
         max_statements: int = BATCH_STATEMENTS) -> list[list[Statement]]:
    """Split statements into logged batches under Cassandra's batch size limit, in order."""
    out: list[list[Statement]] = []
    size = 0
    for stmt in statements:
        n = _size(stmt[1])
        if not out or size + n > max_bytes or len(out[-1]) >= max_statements:
            out.append([])
            size = 0
        out[-1].append(stmt)
        size += n
    return out


# ---- the store ----------------------------------------------------------------------------------


def _message(r: Row, conv: str) -> Message:
    return Message(conv=conv, seq=r[2], sender=r[3], ts=r[4], cmid=r[5], text=r[6], reply_to=r[7],
                   attachments=list(r[8] or []), mentions=list(r[9] or []), edited_at=r[10], deleted=bool(r[11]))


def _conv(r: Row, last_seq: int, settings: Row | None) -> ConvRow:
    """A `convs` row with its head and its `conv_settings` row (conv_id, slow_mode_s, read_only,
    allow_guests, permissions, pinned), if any: none is the defaults."""
    row = ConvRow(id=r[0], kind=r[1], title=r[2], visibility=r[3], password_hash=r[4], history=r[5], owner=r[6],
                  created_at=r[7], last_seq=last_seq)
    if settings is not None:
        row.slow_mode_s, row.read_only, row.allow_guests = int(settings[1] or 0), bool(settings[2]), bool(settings[3])
        row.permissions = {str(k): str(v) for k, v in (settings[4] or {}).items()}
        row.pinned = [int(seq) for seq in settings[5] or []]
    return row


def _sanction(conv: str, r: Row) -> SanctionRow:
    """A `sanctions` row (conv_id, user_id, kind, until, issued_by, at, reason)."""
    return SanctionRow(conv=conv, user=r[1], kind=r[2], until=int(r[3]), by=r[4], at=int(r[5]), reason=r[6])


class CassandraStore:
    """Implements parley.ports.Store on Cassandra / ScyllaDB through a CqlSession."""

    def __init__(self, session: CqlSession, *, idem_ttl_s: int = 7 * 86400, outbox_ttl_s: int = 7 * 86400) -> None:
        self._s = session
        self._idem_ttl_s = idem_ttl_s
        self._outbox_ttl_s = outbox_ttl_s
        self._outbox_ids = IdClock()
        self._audit_ids = IdClock()
        self._writer = uuid.uuid4().hex
        #: Per shard: the largest outbox id seen in the store (see IdClock).
        self._floor: dict[int, int] = {}
        self._limit = asyncio.Semaphore(_IN_FLIGHT)

    @classmethod
    async def connect(cls, cfg: ClusterSettings, **kw: int) -> "CassandraStore":
        return cls(await DriverSession.connect(cfg), **kw)

    async def ping(self) -> None:
        # Not behind the in-flight limit: readiness asks whether the cluster answers, not whether
        # this process is busy.
        await self._s.execute("store_ping", [])

    async def close(self) -> None:
        await self._s.close()

    # ---- plumbing -------------------------------------------------------------------------

    async def _one(self, name: str, params: Sequence[Any]) -> Row | None:
        async with self._limit:
            page = await self._s.execute(name, params)
        return page.rows[0] if page.rows else None

    async def _rows(self, name: str, params: Sequence[Any], fetch_size: int = 1000) -> AsyncGenerator[Row, None]:
        state: bytes | None = None
        while True:
            async with self._limit:
                page = await self._s.execute(name, params, fetch_size=fetch_size, paging_state=state)
            for row in page.rows:
                yield row
            if page.paging_state is None:
                return
            state = page.paging_state

    async def _all(self, name: str, params: Sequence[Any]) -> list[Row]:
        return [row async for row in self._rows(name, params)]

    async def _lwt(self, name: str, params: Sequence[Any]) -> bool:
        """One conditional statement: whether it applied (row[0] is `[applied]`)."""
        async with self._limit:
            page = await self._s.execute(name, params)
        return bool(page.rows[0][0])

    async def _batch(self, items: Sequence[Statement], conditional: bool = False) -> list[Row]:
        async with self._limit:
            return await self._s.batch(items, conditional=conditional)

    @staticmethod
    async def _gather(aws: Iterable[Awaitable[T]]) -> list[T]:
        return list(await asyncio.gather(*aws))

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
            (stored, newest), members, cursors, settings, sanctions = await asyncio.gather(
                self._head(conv_id), self._all("members_of", [conv_id]), self._all("cursors_of", [conv_id]),
                self._one("settings_get", [conv_id]), self._all("sanctions_of", [conv_id]))
            read = {r[0]: int(r[1] or 0) for r in cursors}
            state = facts.convs[conv_id] = ConvState(_conv(row, newest, settings), {
                r[0]: MemberRow(conv=conv_id, user=r[0], role=r[1], visible_from=r[2], read_seq=read.get(r[0], 0),
                                joined_at=r[3]) for r in members})
            for r in sanctions:
                sanction = _sanction(conv_id, r)
                (state.mutes if sanction.kind == "mute" else state.bans)[sanction.user] = sanction
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
            row = await self._one("message_get", [conv_id, bucket_of(seq), seq])
            if row is not None:
                msg = _message(row, conv_id)
                await self._attach_reactions([msg])
                facts.messages[key] = msg

        async def attachment(attachment_id: str) -> None:
            found = await self.attachment(attachment_id)
            if found is not None:
                facts.attachments[attachment_id] = found

        async def pair(a: str, b: str) -> None:
            facts.blocks.update(await self._blocks_between(a, b))

        pairs = sorted({(min(a, b), max(a, b)) for a, b in needs.blocks})
        await self._gather([*map(conv, sorted(needs.convs)), *map(user, sorted(needs.users | needs.accounts)),
                            *map(idem, sorted(needs.idem)), *map(message, sorted(needs.messages)),
                            *map(attachment, sorted(needs.attachments)), *(pair(a, b) for a, b in pairs)])
        return facts

    async def _blocks_between(self, a: str, b: str) -> set[tuple[str, str]]:
        """(blocker, blocked) pairs between a and b, either way: two rows of `blocks`."""
        ab, ba = await asyncio.gather(self._one("block_get", [a, b]), self._one("block_get", [b, a]))
        return {p for p, found in (((a, b), ab), ((b, a), ba)) if found is not None}

    async def apply(self, mutations: Sequence[Mutation]) -> list[int]:
        plan = plan_writes(mutations, self._next_outbox_id, self._audit_statements, self._idem_ttl_s,
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

    def _audit_statements(self, entries: Sequence[AuditEntry]) -> list[Statement]:
        out: list[Statement] = []
        for e in entries:
            id_ = self._audit_ids.next()
            day = id_ms(id_) // DAY_MS
            details = _details_encode(e.details)
            for scope in ("all", f"actor:{e.actor}", f"target:{e.target}"):
                out.append(("audit_put", [scope, day, id_, self._writer, e.at, e.actor, e.action, e.target, e.conv,
                                          e.reason, details]))
                out.append(("audit_day_put", [scope, day]))
        return out

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

    # ---- audit log ------------------------------------------------------------------------

    async def append_audit(self, entries: Sequence[AuditEntry]) -> None:
        await self._gather(self._batch(chunk) for chunk in pack(self._audit_statements(entries)))

    async def audit_entries(self, query: AuditQuery) -> list[AuditEntry]:
        scope = (f"actor:{query.actor}" if query.actor is not None
                 else f"target:{query.target}" if query.target is not None else "all")
        bound = query.before_id if query.before_id is not None else 2**63 - 1
        out: list[AuditEntry] = []
        for (day,) in await self._all("audit_days", [scope]):
            if day > id_ms(bound) // DAY_MS:
                continue
            async for r in self._rows("audit_page", [scope, day, bound, 2**31 - 1], fetch_size=500):
                e = AuditEntry(id=r[0], at=r[2], actor=r[3], action=r[4], target=r[5], conv=r[6], reason=r[7],
                               details=_details_decode(r[8]))
                if ((query.actor is None or e.actor == query.actor) and (query.target is None or e.target == query.target)
                        and (query.action is None or e.action == query.action)
                        and (query.since is None or e.at >= query.since) and (query.until is None or e.at < query.until)):
                    out.append(e)
                    if len(out) >= query.limit:
                        return out
        return out

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
        """The conversation with its stored head and its settings."""
        row, head, settings = await asyncio.gather(self._one("conv_get", [conv]), self._stored_head(conv),
                                                   self._one("settings_get", [conv]))
        return None if row is None else _conv(row, head, settings)

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

    async def member_ids(self, conv: str) -> list[str]:
        return [r[0] for r in await self._all("members_of", [conv])]

    async def block_peers(self, user: str) -> set[str]:
        """The users `user` blocks (`blocks`) and those who block `user` (`blocked_by`)."""
        blocks, blockers = await asyncio.gather(self._all("blocks_by", [user]), self._all("blockers_of", [user]))
        return {r[0] for r in blocks} | {r[0] for r in blockers}

    # ---- attachments ----------------------------------------------------------------------

    async def put_attachment(self, row: AttachmentRow) -> None:
        async with self._limit:
            await self._s.execute("attachment_put", [row.id, row.conv, row.uploader, row.name, row.mime, row.size,
                                                     row.created_at, row.uploaded])

    async def attachment(self, attachment_id: str) -> AttachmentRow | None:
        r = await self._one("attachment_get", [attachment_id])
        if r is None:
            return None
        return AttachmentRow(id=r[0], conv=r[1], uploader=r[2], name=r[3], mime=r[4], size=r[5], created_at=r[6],
                             uploaded=bool(r[7]))

    # ---- admin inspection -----------------------------------------------------------------

    async def conv_members(self, conv: str) -> tuple[ConvRow, list[MemberRow]] | None:
        row, members, cursors = await asyncio.gather(
            self._conv_row(conv), self._all("members_of", [conv]), self._all("cursors_of", [conv]))
        if row is None:
            return None
        read = {r[0]: int(r[1] or 0) for r in cursors}
        out = [MemberRow(conv=conv, user=r[0], role=r[1], visible_from=r[2], read_seq=read.get(r[0], 0),
                         joined_at=r[3]) for r in members]
        return row, sorted(out, key=lambda m: (m.joined_at, m.user))

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
            async with aclosing(self._rows("messages_asc", [conv, b, lo, top + 1, _NO_LIMIT], fetch_size=500)) as rows:
                async for r in rows:
                    if r[3] == user:
                        out.append(_message(r, conv))
                        if len(out) >= limit:
                            break
            if len(out) >= limit:
                break
        await self._attach_reactions(out)
        return out

    # ---- accounts -------------------------------------------------------------------------
    #
    # users (0001): id -> username, password_hash, created_at; users_by_name: the username
    # claim (LWT) and login's (id, hash). account_state (0003): role, status, suspension, guest,
    # token generation and `rev`, written by LWT only; a user older than 0003 has no row there
    # and reads as the defaults. accounts_by_name: the search index (see search_accounts).

    async def create_user(self, user_id: str, username: str, password_hash: str, created_at: int, *,
                          status: str = "active", guest: bool = False, invite: str | None = None) -> None:
        """The name is claimed first (LWT), then the invite is spent (LWT); a refused invite gives
        the name back, so a refused registration leaves nothing. Then the state row (LWT insert,
        before the `users` row: an account is never read without its status) and the `users` row
        with its search entry (one logged batch). A retry with the same id goes on where it
        stopped. If the process dies, or the cluster fails, after the claims, the name (and the
        code) stay held by `user_id` without an account: login finds no account for it."""
        if not await self._lwt("user_claim_name", [username, user_id, password_hash]):
            owner = await self._one("user_by_name", [username])
            if owner is None or owner[0] != user_id:
                raise Conflict("username is taken")
        if invite is not None:
            try:
                await self._use_invite(invite, user_id, created_at)
            except Forbidden:
                await self._lwt("user_release_name", [username, user_id])
                raise
        await self._lwt("state_init", [user_id, None, status, None, None, guest, 0, 0])
        bucket = name_bucket(username)
        await self._batch([
            ("user_insert", [user_id, username, password_hash, created_at]),
            ("name_index_put", [bucket, username, user_id, status, None, guest]),
            ("name_bucket_put", [0, bucket]),
        ])

    async def _use_invite(self, code: str, user_id: str, at: int) -> None:
        row = await self._one("invite_get", [code])
        if row is not None and row[4] == user_id:
            return  # our own retry
        if row is None or row[4] is not None or (row[3] is not None and row[3] <= at):
            raise Forbidden("the invite code is unknown, used or expired")
        # expires_at never changes: checked above; the LWT only has to win the code.
        if not await self._lwt("invite_use", [user_id, at, code, row[1]]):
            again = await self._one("invite_get", [code])
            if again is None or again[4] != user_id:
                raise Forbidden("the invite code is unknown, used or expired")

    async def user_by_name(self, username: str) -> tuple[str, str] | None:
        row = await self._one("user_by_name", [username])
        return (row[0], row[1]) if row else None

    async def _account_rows(self, user_id: str) -> tuple[Row | None, Row | None]:
        user, state = await asyncio.gather(self._one("user_get", [user_id]), self._one("state_get", [user_id]))
        return user, state

    async def account(self, user_id: str) -> Account | None:
        user, state = await self._account_rows(user_id)
        return None if user is None else _account(user, state)

    async def account_by_name(self, username: str) -> Account | None:
        row = await self._one("user_by_name", [username])
        if row is None:
            return None
        found = await self.account(row[0])
        # `users` holds the name: a claim whose account is not written (or renamed away) is no match
        return found if found is not None and found.username == username else None

    async def update_account(self, user_id: str, patch: AccountPatch) -> Account | None:
        """A new username is claimed first (LWT: Conflict before anything changes); the state
        changes by compare-and-set on `rev`, so concurrent updates (a suspension and a role
        change, two session cuts) all land; then `users`, the search entry and the old name's
        release. The search entry is written after the state's LWT and may lag an update that
        died half way (or one racing another): the next update rewrites it, and search
        re-checks every match against the state."""
        user, state = await self._account_rows(user_id)
        if user is None:
            return None
        old_name, old_hash = user[1], user[2]
        name = old_name if isinstance(patch.username, msgspec.UnsetType) else patch.username
        pw = old_hash if isinstance(patch.password_hash, msgspec.UnsetType) else patch.password_hash
        renamed = name != old_name
        if renamed and not await self._lwt("user_claim_name", [name, user_id, pw]):
            owner = await self._one("user_by_name", [name])
            if owner is None or owner[0] != user_id:
                raise Conflict("username is taken")
        try:
            new = await self._set_state(user, state, patch, name)
        except Exception:
            if renamed:  # nothing else changed: give the new name back
                await self._lwt("user_release_name", [name, user_id])
            raise
        stmts: list[Statement] = [("name_index_put", [name_bucket(name), name, user_id, new.status, new.role,
                                                      new.guest])]
        if renamed or pw != old_hash:
            stmts.append(("user_set_name", [name, pw, user_id]))
        if renamed:
            stmts += [("name_index_drop", [name_bucket(old_name), old_name]), ("name_bucket_put", [0, name_bucket(name)])]
        await self._batch(stmts)
        if renamed:
            await self._lwt("user_release_name", [old_name, user_id])
        elif pw != old_hash:
            await self._lwt("user_name_set_hash", [pw, name, user_id])
        return new

    async def _set_state(self, user: Row, state: Row | None, patch: AccountPatch, name: str) -> Account:
        """Compare-and-set of account_state on `rev`: the account after `patch`."""
        user_id = user[0]
        for _ in range(CAS_ROUNDS):
            if state is None:  # an account from before migration 0003: give it its row first
                await self._lwt("state_init", [user_id, None, "active", None, None, False, 0, 0])
                state = await self._one("state_get", [user_id])
                continue
            cur = _account(user, state)
            new = msgspec.structs.replace(cur, username=name)
            for field_ in ("role", "status", "suspended_until", "suspend_reason"):
                value = getattr(patch, field_)
                if not isinstance(value, msgspec.UnsetType):
                    setattr(new, field_, value)
            if patch.cut_sessions:
                new.token_gen += 1
            rev = state[7]
            if (new.role, new.status, new.suspended_until, new.suspend_reason, new.token_gen) == (
                    cur.role, cur.status, cur.suspended_until, cur.suspend_reason, cur.token_gen):
                return new
            if await self._lwt("state_cas", [new.role, new.status, new.suspended_until, new.suspend_reason,
                                             new.token_gen, (rev or 0) + 1, user_id, rev]):
                return new
            state = await self._one("state_get", [user_id])
        raise Unavailable("account update contended; try again", retry_after_ms=100)

    async def search_accounts(self, query: AccountQuery) -> list[Account]:
        """Usernames live in `accounts_by_name`, partitioned by their first two characters: a
        prefix of two or more is a range in one partition; a shorter one (or none) walks the
        buckets in order (`account_name_buckets`, one small partition). Status, role and guest
        are filtered on the index copies and re-checked on the account: a filter that matches
        few accounts (status=pending) walks every name after `after`, one page request per
        200 names and one account read per match. Accounts created before migration 0003 are
        in no bucket until they are next updated."""
        prefix = query.prefix or ""
        after = query.after
        out: list[Account] = []
        if query.limit <= 0:
            return out
        if len(prefix) >= NAME_BUCKET_CHARS:
            buckets = [prefix[:NAME_BUCKET_CHARS]]
        else:
            buckets = [r[0] for r in await self._all("name_buckets", [0]) if r[0].startswith(prefix)]
        if after is not None:
            buckets = [b for b in buckets if b >= after[:NAME_BUCKET_CHARS]]
        lo = prefix if after is None or after < prefix else after
        hi = _successor(prefix) if prefix else None

        def wanted(status: str | None, role: str | None, guest: bool | None) -> bool:
            return ((query.status is None or (status or "active") == query.status)
                    and (query.role is None or role == query.role)
                    and (query.guest is None or bool(guest) == query.guest))

        for b in sorted(buckets):
            top = _successor(b) if hi is None else min(hi, _successor(b))
            if lo >= top:
                continue
            async with aclosing(self._rows("name_index_range", [b, lo, top, _NO_LIMIT], fetch_size=_PAGE)) as rows:
                batch: list[tuple[str, str]] = []
                async for username, uid, status, role, guest in rows:
                    if username != after and wanted(status, role, guest):
                        batch.append((username, uid))
                    if len(batch) >= _PAGE:
                        out += await self._recheck(batch, wanted)
                        batch = []
                        if len(out) >= query.limit:
                            break
                out += await self._recheck(batch, wanted)
            if len(out) >= query.limit:
                break
        if query.prefix:  # or an exact user id
            exact = await self.account(query.prefix)
            if (exact is not None and wanted(exact.status, exact.role, exact.guest)
                    and (after is None or exact.username > after) and all(a.id != exact.id for a in out)):
                out.append(exact)
                out.sort(key=lambda a: a.username)
        return out[:query.limit]

    async def _recheck(self, found: list[tuple[str, str]], wanted: Any) -> list[Account]:
        accounts = await self._gather(self.account(uid) for _, uid in found)
        return [a for (username, _), a in zip(found, accounts)
                if a is not None and a.username == username and wanted(a.status, a.role, a.guest)]

    # ---- instance policy ------------------------------------------------------------------

    async def instance_policy(self) -> dict[str, Any]:
        return {name: _json_decode(value) for name, value in await self._all("policy_all", [0])}

    async def set_instance_policy(self, values: Mapping[str, Any]) -> None:
        if values:  # one partition: the batch is atomic and isolated
            await self._batch([("policy_put", [0, name, _json_encode(v)]) for name, v in values.items()])

    # ---- invites --------------------------------------------------------------------------

    async def create_invite(self, invite: Invite) -> None:
        if not await self._lwt("invite_create", [invite.code, invite.created_by, invite.created_at, invite.expires_at,
                                                 invite.used_by, invite.used_at]):
            raise Conflict("invite code already exists")
        # Listed once it exists: a listing entry never names a code another invite holds.
        async with self._limit:
            await self._s.execute("invite_list_put", [0, invite.created_at, invite.code])

    async def invites(self, include_used: bool, limit: int) -> list[Invite]:
        """Newest first from `invites_by_time` (one partition), each read from `invites`, where
        its use is recorded."""
        out: list[Invite] = []
        if limit <= 0:
            return out
        async with aclosing(self._rows("invites_listed", [0], fetch_size=_PAGE)) as rows:
            page: list[tuple[int, str]] = []
            async for created_at, code in rows:
                page.append((created_at, code))
                if len(page) >= _PAGE:
                    out += await self._invite_page(page, include_used)
                    page = []
                    if len(out) >= limit:
                        break
            out += await self._invite_page(page, include_used)
        return out[:limit]

    async def _invite_page(self, page: list[tuple[int, str]], include_used: bool) -> list[Invite]:
        rows = await self._gather(self._one("invite_get", [code]) for _, code in page)
        found = [Invite(code=r[0], created_by=r[1], created_at=r[2], expires_at=r[3], used_by=r[4], used_at=r[5])
                 for (at, _), r in zip(page, rows) if r is not None and r[2] == at]
        return [i for i in found if include_used or i.used_by is None]

    # ---- reports --------------------------------------------------------------------------

    async def _next_id(self, counter: str) -> int:
        """The next value of a named counter, by compare-and-set: a dense, small int."""
        for _ in range(CAS_ROUNDS):
            row = await self._one("counter_get", [counter])
            if row is None or row[0] is None:
                if await self._lwt("counter_init", [counter, 1]):
                    return 1
                continue
            current = int(row[0])
            if await self._lwt("counter_cas", [current + 1, counter, current]):
                return current + 1
            await asyncio.sleep(random.uniform(0, 0.01))  # lost a race: another report took it
        raise Unavailable("report ids contended; try again", retry_after_ms=100)

    async def add_report(self, report: Report) -> int:
        """Report ids come from an LWT counter (`counters`, name "reports"), not from the time-
        based IdClock of the outbox and the audit log: they are dense small ints like SQLite's
        (JSON-safe for browsers, where time-based ids pass 2^53; the queue pages with them),
        unique across gateways without a writer column, and the order of ids is the order of
        filing, so "newest first" is exact. The price is two Paxos rounds per report (a read and
        a compare-and-set, retried when two gateways race): fine at the rate people file
        reports. A gateway that dies between the counter and the insert leaves a gap."""
        id_ = await self._next_id("reports")
        filed = _Filed(at=report.at, reporter=report.reporter, kind=report.kind, target_user=report.target_user,
                       reason=report.reason, conv=report.conv, seq=report.seq, excerpt=report.excerpt)
        # The target's listing first: an entry whose report is missing is skipped when read.
        async with self._limit:
            await self._s.execute("report_target_put", [report.target_user, id_])
        if not await self._lwt("report_put", [id_ // REPORT_BUCKET, id_, _filed_encode(filed), report.status,
                                              report.claimed_by, report.claimed_at, report.resolved_by,
                                              report.resolved_at, report.resolution, report.note]):
            raise Conflict(f"report id {id_} is taken")  # the counter only moves forward: not expected
        return id_

    async def report(self, report_id: int) -> Report | None:
        if report_id <= 0:
            return None
        row = await self._one("report_get", [report_id // REPORT_BUCKET, report_id])
        return _report(row) if row else None

    async def reports(self, query: ReportQuery) -> list[Report]:
        """Newest first. By target: that user's listing, each report read by id. Otherwise the
        partitions of `reports` from the newest id down, filtered here: a filter on status or
        moderator passes over the reports newer than its matches (the open queue is mostly
        recent)."""
        out: list[Report] = []
        if query.limit <= 0:
            return out

        def wanted(r: Report) -> bool:
            return ((query.status is None or r.status == query.status)
                    and (query.claimed_by is None or r.claimed_by == query.claimed_by)
                    and (query.target_user is None or r.target_user == query.target_user))

        if query.target_user is not None:
            bound = query.before_id if query.before_id is not None else 2**63 - 1
            async with aclosing(self._rows("reports_of_target", [query.target_user, bound, _NO_LIMIT],
                                           fetch_size=_PAGE)) as rows:
                ids: list[int] = []
                async for (id_,) in rows:
                    ids.append(id_)
                    if len(ids) >= _PAGE:
                        out += [r for r in await self._gather(map(self.report, ids)) if r is not None and wanted(r)]
                        ids = []
                        if len(out) >= query.limit:
                            break
                out += [r for r in await self._gather(map(self.report, ids)) if r is not None and wanted(r)]
            return out[:query.limit]
        row = await self._one("counter_get", ["reports"])
        top = int(row[0]) if row and row[0] is not None else 0
        bound = min(query.before_id, top + 1) if query.before_id is not None else top + 1
        for b in range(bucket_of_report(bound - 1), -1, -1) if bound > 1 else ():
            async with aclosing(self._rows("reports_page", [b, bound, _NO_LIMIT], fetch_size=_PAGE)) as rows:
                async for r in rows:
                    rep = _report(r)
                    if wanted(rep):
                        out.append(rep)
                        if len(out) >= query.limit:
                            return out
        return out

    async def claim_report(self, report_id: int, moderator: str, at: int) -> Report | None:
        b = report_id // REPORT_BUCKET
        if (await self._lwt("report_claim_open", [moderator, at, b, report_id])
                or await self._lwt("report_reclaim", [moderator, at, b, report_id, moderator])):
            return await self.report(report_id)
        return None

    async def resolve_report(self, report_id: int, moderator: str, resolution: str, note: str | None,
                             at: int) -> Report | None:
        # IF status = <the status read>: an LWT has no "IF status != ..." that is safe on a
        # missing row. The status only moves open -> claimed -> resolved, so this ends.
        for _ in range(4):
            cur = await self.report(report_id)
            if cur is None or cur.status == "resolved":
                return None
            if await self._lwt("report_resolve", [moderator, at, resolution, note, report_id // REPORT_BUCKET,
                                                  report_id, cur.status]):
                return await self.report(report_id)
        return None


def name_bucket(username: str) -> str:
    return username[:NAME_BUCKET_CHARS]


def bucket_of_report(report_id: int) -> int:
    return max(report_id, 0) // REPORT_BUCKET


def _successor(prefix: str) -> str:
    """The smallest string greater than every string starting with `prefix`."""
    while prefix and ord(prefix[-1]) == 0x10FFFF:
        prefix = prefix[:-1]
    if not prefix:
        return "\U0010ffff" * 64
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _account(user: Row, state: Row | None) -> Account:
    """A `users` row (id, username, password_hash, created_at) with its account_state row
    (id, role, status, suspended_until, suspend_reason, guest, token_gen, rev), if any."""
    if state is None:
        return Account(id=user[0], username=user[1], created_at=user[3])
    return Account(id=user[0], username=user[1], created_at=user[3], role=state[1], status=state[2] or "active",
                   suspended_until=state[3], suspend_reason=state[4], guest=bool(state[5]),
                   token_gen=int(state[6] or 0))


def _report(r: Row) -> Report:
    f = _filed_decode(r[1])
    return Report(id=r[0], at=f.at, reporter=f.reporter, kind=f.kind, target_user=f.target_user, conv=f.conv,
                  seq=f.seq, reason=f.reason, excerpt=f.excerpt, status=r[2], claimed_by=r[3], claimed_at=r[4],
                  resolved_by=r[5], resolved_at=r[6], resolution=r[7], note=r[8])
