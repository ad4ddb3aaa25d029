"""The store contract, ModerationStore: the audit log, the instance policy and the reports queue.
Every adapter must pass these unchanged (conftest.py)."""

from __future__ import annotations

from parley.records import AuditEntry, AuditQuery, PutAudit, Report, ReportQuery
from tests.contract.samples import seeded

def audit(at: int, actor: str = "mod", action: str = "member.mute", target: str = "b") -> AuditEntry:
    return AuditEntry(at=at, actor=actor, action=action, target=target, conv="c1", reason=f"reason {at}",
                      details={"until": at + 60_000, "auto": False})



async def test_the_audit_log_is_read_newest_first_and_filtered(reopen):
    store = await seeded(reopen)
    await store.apply([PutAudit(audit(1)), PutAudit(audit(2, action="member.kick"))])
    await store.append_audit([audit(3, actor="system", target="a"), audit(4, target="a")])
    store = await reopen()  # durable
    every = await store.audit_entries(AuditQuery())
    assert [e.at for e in every] == [4, 3, 2, 1]
    assert every[0].id > every[1].id > every[2].id > every[3].id > 0
    assert every[0].details == {"until": 60_004, "auto": False} and every[0].reason == "reason 4"
    assert [e.at for e in await store.audit_entries(AuditQuery(actor="system"))] == [3]
    assert [e.at for e in await store.audit_entries(AuditQuery(target="a"))] == [4, 3]
    assert [e.at for e in await store.audit_entries(AuditQuery(action="member.kick"))] == [2]
    assert [e.at for e in await store.audit_entries(AuditQuery(since=2, until=4))] == [3, 2]
    assert [e.at for e in await store.audit_entries(AuditQuery(limit=2))] == [4, 3]
    assert [e.at for e in await store.audit_entries(AuditQuery(before_id=every[1].id))] == [2, 1]



async def test_the_instance_policy_is_a_durable_key_value_map(reopen):
    store = await reopen()
    assert await store.instance_policy() == {}
    await store.set_instance_policy({"registration": "invite", "guests": True, "conv_defaults": {"group.send": "admin"}})
    await store.set_instance_policy({"guests": False})
    store = await reopen()
    assert await store.instance_policy() == {"registration": "invite", "guests": False,
                                             "conv_defaults": {"group.send": "admin"}}



async def test_reports_queue_claim_and_resolve_conditionally(reopen):
    store = await reopen()
    r1 = await store.add_report(Report(at=1, reporter="a", kind="message", target_user="b", conv="c1", seq=3,
                                       reason="spam", excerpt="buy now"))
    r2 = await store.add_report(Report(at=2, reporter="a", kind="user", target_user="c", reason="rude"))
    assert r2 > r1 > 0
    assert [r.id for r in await store.reports(ReportQuery())] == [r2, r1]
    claimed = await store.claim_report(r1, "mod1", 10)
    assert claimed is not None and (claimed.status, claimed.claimed_by, claimed.claimed_at) == ("claimed", "mod1", 10)
    assert await store.claim_report(r1, "mod2", 11) is None  # held by another
    assert await store.claim_report(r1, "mod1", 12) is not None  # re-claim by the holder
    assert [r.id for r in await store.reports(ReportQuery(status="open"))] == [r2]
    assert [r.id for r in await store.reports(ReportQuery(claimed_by="mod1"))] == [r1]
    done = await store.resolve_report(r1, "mod1", "delete_message", "gone", 20)
    assert done is not None and (done.status, done.resolution, done.note, done.resolved_by) == (
        "resolved", "delete_message", "gone", "mod1")
    assert await store.resolve_report(r1, "mod2", "dismiss", None, 21) is None
    assert await store.claim_report(r1, "mod1", 22) is None
    assert await store.report(999) is None
    store = await reopen()
    again = await store.report(r1)
    assert again is not None and again.excerpt == "buy now" and again.seq == 3
    assert [r.id for r in await store.reports(ReportQuery(target_user="c"))] == [r2]
    assert [r.id for r in await store.reports(ReportQuery(before_id=r2))] == [r1]
