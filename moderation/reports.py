"""Members report a message they can see, or a user; moderators work the queue (admin API)."""

from __future__ import annotations

from moderation import policy
from moderation.admin.bodies import MessageReport, ReportBody, ReportReceipt
from parley.accounts import Principal, now_ms
from parley.errors import BadRequest, NotFound
from parley.ports import Store
from parley.records import Report


async def submit(store: Store, who: Principal, body: ReportBody) -> ReportReceipt:
    """Queue a report. A message must be one the reporter can read (else the same not_found a
    non-member gets everywhere); its text is kept as evidence."""
    if isinstance(body, MessageReport):
        found = await store.membership(body.conv, who.user_id)
        if found is None:
            raise NotFound("no such conversation")
        row, member = found
        member = policy.authorize(row, member, policy.Action.READ)
        if not member.visible_from <= body.seq <= row.last_seq:
            raise NotFound("no such message")
        (page,) = await store.message_pages([(body.conv, body.seq, body.seq + 1, 1, False)])
        if not page:
            raise NotFound("no such message")
        msg = page[0]
        report = Report(at=now_ms(), reporter=who.user_id, kind="message", target_user=msg.sender,
                        conv=body.conv, seq=body.seq, reason=body.reason, excerpt=msg.text)
    else:
        target = await store.account(body.user)
        if target is None or target.status == "deleted":
            raise NotFound("no such user")
        if target.id == who.user_id:
            raise BadRequest("you cannot report yourself")
        report = Report(at=now_ms(), reporter=who.user_id, kind="user", target_user=target.id, reason=body.reason)
    report_id = await store.add_report(report)
    return ReportReceipt(id=report_id, status="open")
