"""The Cassandra store's moderation tables: the audit log (one copy per scope and day, newest
first), the instance policy, invite codes (listed by time in `invites_by_time`) and the
reports queue (ids from an LWT counter, partitioned by id)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping, Sequence
from contextlib import aclosing
from typing import Any

import msgspec

from parley.adapters.cassandra.database import CAS_ROUNDS, NO_LIMIT, PAGE, CassandraDatabase
from parley.adapters.cassandra.partitions import DAY_MS, id_ms
from parley.adapters.cassandra.session import Row
from parley.adapters.cassandra.writes import pack
from parley.errors import Conflict, Unavailable
from parley.records import AuditEntry, AuditQuery, Invite, Report, ReportQuery

#: Reports per partition of `reports`: bucket = id // REPORT_BUCKET.
REPORT_BUCKET = 4096

_details_decode = msgspec.json.Decoder(dict[str, str | int | bool | None]).decode
_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.Decoder().decode


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


def bucket_of_report(report_id: int) -> int:
    return max(report_id, 0) // REPORT_BUCKET


def _report(r: Row) -> Report:
    f = _filed_decode(r[1])
    return Report(id=r[0], at=f.at, reporter=f.reporter, kind=f.kind, target_user=f.target_user, conv=f.conv,
                  seq=f.seq, reason=f.reason, excerpt=f.excerpt, status=r[2], claimed_by=r[3], claimed_at=r[4],
                  resolved_by=r[5], resolved_at=r[6], resolution=r[7], note=r[8])


class CassandraModeration(CassandraDatabase):
    """Implements parley.ports.ModerationStore."""

    # ---- audit log ------------------------------------------------------------------------

    async def append_audit(self, entries: Sequence[AuditEntry]) -> None:
        await self._gather(self._batch(chunk) for chunk in pack(self._audit_rows(entries)))

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
        async with aclosing(self._rows("invites_listed", [0], fetch_size=PAGE)) as rows:
            page: list[tuple[int, str]] = []
            async for created_at, code in rows:
                page.append((created_at, code))
                if len(page) >= PAGE:
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
            async with aclosing(self._rows("reports_of_target", [query.target_user, bound, NO_LIMIT],
                                           fetch_size=PAGE)) as rows:
                ids: list[int] = []
                async for (id_,) in rows:
                    ids.append(id_)
                    if len(ids) >= PAGE:
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
            async with aclosing(self._rows("reports_page", [b, bound, NO_LIMIT], fetch_size=PAGE)) as rows:
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
