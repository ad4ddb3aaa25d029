"""What instance staff may do, as plain async functions over the store: no HTTP in here.

Conversation state has one writer (chat_core): conversation actions are published as protocol
commands on the moderator's behalf (`Commands`), exactly like a WebSocket session's writes. Every
action that changes something appends an audit entry, and so does every read of what members
did not show staff themselves (an account, a conversation's member list, reports with their
excerpts); nothing here edits or deletes one.
"""

from __future__ import annotations

import secrets
from typing import Any, Protocol

from moderation import instance_policy
from moderation.admin import bodies as B
from moderation.instance_policy import InstancePolicy, PolicyPatch
from parley.accounts import Principal, now_ms
from parley.auth import INSTANCE_RANK
from parley.errors import BadRequest, Conflict, Forbidden, NotFound
from parley.limits import MAX_REASON_CHARS
from parley.ports import Store
from parley.session_families import Revoker
from parley.records import (
    SUSPENDED_FOREVER, Account, AccountPatch, AccountQuery, AuditEntry, AuditQuery, Invite, Report, ReportQuery,
)


class Commands(Protocol):
    """Publishes protocol writes as a user and returns chat_core's ok result (gateway.commands)."""

    async def run_op(self, user: str, op: str, fields: dict[str, Any], *,
                     instance_role: str | None = None) -> dict[str, Any]: ...


class AdminService:
    def __init__(self, store: Store, commands: Commands, revoker: Revoker) -> None:
        self._store = store
        self._commands = commands
        self._revoker = revoker

    # ---- audit ----------------------------------------------------------------------------

    async def audit(self, actor: Principal, action: str, target: str, *, conv: str | None = None,
                    reason: str | None = None, details: dict[str, str | int | bool | None] | None = None) -> None:
        await self._store.append_audit([AuditEntry(at=now_ms(), actor=actor.user_id, action=action, target=target,
                                                   conv=conv, reason=reason, details=details or {})])

    async def audit_log(self, q: B.AuditQueryParams) -> B.AuditPage:
        entries = await self._store.audit_entries(AuditQuery(
            actor=q.actor, target=q.target, action=q.action, since=q.since, until=q.until,
            before_id=q.before, limit=q.limit))
        return B.AuditPage(entries=entries, next_before=entries[-1].id if len(entries) == q.limit else None)

    # ---- users ----------------------------------------------------------------------------

    async def search_users(self, actor: Principal, q: B.UsersQuery) -> B.UsersPage:
        users = await self._store.search_accounts(AccountQuery(
            prefix=q.q.lower() if q.q else None, status=q.status, role=q.role, guest=q.guest, after=q.after,
            limit=q.limit))
        await self.audit(actor, "user.search", "users", details={
            "q": q.q, "status": q.status, "role": q.role, "guest": q.guest, "results": len(users)})
        return B.UsersPage(users=users, next_after=users[-1].username if len(users) == q.limit else None)

    async def user(self, actor: Principal, user_id: str) -> Account:
        account = await self._account(user_id)
        await self.audit(actor, "user.view", user_id)
        return account

    async def _account(self, user_id: str) -> Account:
        account = await self._store.account(user_id)
        if account is None:
            raise NotFound("no such user")
        return account

    async def _target(self, actor: Principal, user_id: str) -> Account:
        """The account a staff action is aimed at: not oneself, not staff of one's rank or above."""
        account = await self._account(user_id)
        if account.id == actor.user_id:
            raise Forbidden("staff cannot act on their own account")
        if account.role is not None and INSTANCE_RANK[account.role] >= INSTANCE_RANK.get(actor.role or "", 0):
            raise Forbidden(f"a {actor.role} cannot act on an instance {account.role}")
        return account

    async def _patch(self, user_id: str, patch: AccountPatch) -> Account:
        account = await self._store.update_account(user_id, patch)
        if account is None:
            raise NotFound("no such user")
        return account

    async def suspend(self, actor: Principal, user_id: str, body: B.SuspendBody) -> Account:
        await self._target(actor, user_id)
        until = SUSPENDED_FOREVER if body.duration_s is None else now_ms() + body.duration_s * 1000
        # Every token, login and live session of the account ends, on every gateway.
        account = await self._revoker.cut_account(self._store, user_id, AccountPatch(
            suspended_until=until, suspend_reason=body.reason), "account suspended")
        if account is None:
            raise NotFound("no such user")
        await self.audit(actor, "user.suspend", user_id, reason=body.reason,
                         details={"until": until, "duration_s": body.duration_s})
        # Its connections to calls' media outlive its sessions (LiveKit renews a connected client's
        # token by itself): each call's writer takes it out, and the calls role puts it out of the room.
        for call in await self._store.live_calls_of(user_id):
            await self._commands.run_op(actor.user_id, "call.remove", {"call": call, "user": user_id},
                                        instance_role=actor.role)
        return account

    async def unsuspend(self, actor: Principal, user_id: str, body: B.ReasonBody) -> Account:
        await self._target(actor, user_id)
        account = await self._patch(user_id, AccountPatch(suspended_until=None, suspend_reason=None))
        await self.audit(actor, "user.unsuspend", user_id, reason=body.reason)
        return account

    async def approve(self, actor: Principal, user_id: str, body: B.ReasonBody) -> Account:
        return await self._decide_pending(actor, user_id, body, "active", "user.approve")

    async def reject(self, actor: Principal, user_id: str, body: B.ReasonBody) -> Account:
        return await self._decide_pending(actor, user_id, body, "rejected", "user.reject")

    async def _decide_pending(self, actor: Principal, user_id: str, body: B.ReasonBody, status: str,
                              action: str) -> Account:
        account = await self._account(user_id)
        if account.status != "pending":
            raise Conflict(f"the account is {account.status}, not pending")
        account = await self._patch(user_id, AccountPatch(status=status))
        await self.audit(actor, action, user_id, reason=body.reason)
        return account

    # ---- conversations --------------------------------------------------------------------

    async def inspect(self, actor: Principal, conv: str) -> B.ConvInspection:
        found = await self._store.conv_members(conv)
        if found is None:
            raise NotFound("no such conversation")
        row, members = found
        await self.audit(actor, "conv.view", conv, conv=conv,
                         details={"visibility": row.visibility, "members": len(members)})
        info = B.ConvInfo(id=row.id, kind=row.kind, title=row.title, topic=row.topic, visibility=row.visibility,
                          has_password=row.password_hash is not None, history=row.history, owner=row.owner,
                          created_at=row.created_at, last_seq=row.last_seq)
        return B.ConvInspection(conv=info, members=members)

    async def conv_command(self, actor: Principal, op: str, conv: str, fields: dict[str, Any], *,
                           target: str, reason: str | None) -> B.ActionResult:
        """Publish `op` on `conv` as the moderator (with its instance role). chat_core decides,
        and audits the action in the same write; a refusal is chat_core's error, unchanged."""
        result = await self._commands.run_op(actor.user_id, op, {"conv": conv, **fields},
                                             instance_role=actor.role)
        return B.ActionResult(op=op, result=result)

    async def member_action(self, actor: Principal, op: str, conv: str, body: B.MemberActionBody | B.RoleBody
                            ) -> B.ActionResult:
        fields = {f: v for f in body.__struct_fields__ if (v := getattr(body, f)) is not None}
        return await self.conv_command(actor, op, conv, fields, target=body.user, reason=body.reason)

    async def delete_message(self, actor: Principal, conv: str, seq: int, reason: str) -> B.ActionResult:
        return await self.conv_command(actor, "delete", conv, {"seq": seq, "reason": reason},
                                       target=f"{conv}/{seq}", reason=reason)

    # ---- reports --------------------------------------------------------------------------

    async def reports(self, actor: Principal, q: B.ReportsQuery) -> B.ReportsPage:
        found = await self._store.reports(ReportQuery(status=q.status, claimed_by=q.claimed_by,
                                                      target_user=q.target_user, before_id=q.before, limit=q.limit))
        await self.audit(actor, "report.list", "reports", details={
            "status": q.status, "target_user": q.target_user, "ids": ",".join(str(r.id) for r in found)})
        return B.ReportsPage(reports=found, next_before=found[-1].id if len(found) == q.limit else None)

    async def report(self, actor: Principal, report_id: int) -> Report:
        report = await self._report(report_id)
        await self.audit(actor, "report.view", f"report/{report_id}")
        return report

    async def _report(self, report_id: int) -> Report:
        report = await self._store.report(report_id)
        if report is None:
            raise NotFound("no such report")
        return report

    async def claim(self, actor: Principal, report_id: int) -> Report:
        claimed = await self._store.claim_report(report_id, actor.user_id, now_ms())
        if claimed is None:
            current = await self._report(report_id)
            who = f" by {current.claimed_by}" if current.status == "claimed" else ""
            raise Conflict(f"the report is already {current.status}{who}")
        await self.audit(actor, "report.claim", f"report/{report_id}")
        return claimed

    async def resolve(self, actor: Principal, report_id: int, body: B.ResolveBody) -> Report:
        report = await self._report(report_id)
        if report.status == "resolved":
            raise Conflict("the report is already resolved")
        if report.status == "claimed" and report.claimed_by != actor.user_id and actor.role != "admin":
            raise Forbidden(f"the report is claimed by {report.claimed_by}")
        if body.action == "delete_message":
            if report.kind != "message" or report.conv is None or report.seq is None:
                raise BadRequest("delete_message resolves reports of a message only")
            reason = (body.note or f"report {report_id}")[:MAX_REASON_CHARS]  # the delete command's bound
            await self.delete_message(actor, report.conv, report.seq, reason)
        elif body.action == "suspend_user":
            reason = body.note or f"report {report_id}: {report.reason}"
            await self.suspend(actor, report.target_user, B.SuspendBody(reason=reason[:1000],
                                                                        duration_s=body.duration_s))
        resolved = await self._store.resolve_report(report_id, actor.user_id, body.action, body.note, now_ms())
        if resolved is None:
            raise Conflict("the report is already resolved")
        await self.audit(actor, "report.resolve", f"report/{report_id}", reason=body.note,
                         details={"action": body.action, "target_user": report.target_user})
        return resolved

    # ---- instance policy and invites ------------------------------------------------------

    async def policy(self) -> InstancePolicy:
        return await instance_policy.load(self._store)

    async def update_policy(self, actor: Principal, patch: PolicyPatch) -> InstancePolicy:
        changed = instance_policy.changes(patch)
        if changed:
            await self._store.set_instance_policy(changed)
            await self.audit(actor, "policy.update", "instance",
                             details={k: v if isinstance(v, (str, int, bool)) else str(v) for k, v in changed.items()})
        return await self.policy()

    async def create_invites(self, actor: Principal, body: B.InviteBody) -> B.InvitesPage:
        now = now_ms()
        expires = None if body.expires_in_s is None else now + body.expires_in_s * 1000
        made = [Invite(code=secrets.token_urlsafe(12), created_by=actor.user_id, created_at=now, expires_at=expires)
                for _ in range(body.count)]
        for invite in made:
            await self._store.create_invite(invite)
        await self.audit(actor, "invite.create", "instance", details={"count": body.count, "expires_at": expires})
        return B.InvitesPage(invites=made)

    async def invites(self, q: B.InvitesQuery) -> B.InvitesPage:
        return B.InvitesPage(invites=await self._store.invites(q.include_used, q.limit))
