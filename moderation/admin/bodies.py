"""Request and response bodies of the admin API and the member-facing report/privacy routes.

These Structs both validate requests (msgspec, strict) and generate the OpenAPI components
(`msgspec.json.schema_components`), so the document cannot drift from what is enforced."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from parley.frames import ConvView, Message
from parley.frames import Duration as SanctionDuration
from parley.frames import Reason as CommandReason
from parley.records import Account, AuditEntry, Invite, MemberRow, Report

Id = Annotated[str, Meta(min_length=1, max_length=64)]
#: Instance actions (suspensions, reports): their own bounds. Bodies that become a protocol
#: command use the command's (`CommandReason`, `SanctionDuration`): chat_core enforces those.
Reason = Annotated[str, Meta(min_length=1, max_length=1000)]
Note = Annotated[str, Meta(max_length=1000)]
#: Up to ten years, in seconds; absent = indefinitely.
Duration = Annotated[int, Meta(ge=1, le=10 * 365 * 24 * 3600)]
Limit = Annotated[int, Meta(ge=1, le=200)]
Ms = Annotated[int, Meta(ge=0, le=2**53)]
Seq = Annotated[int, Meta(ge=1, le=2**53)]


class Body(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Admin request bodies refuse unknown fields: a typo must not silently do less."""


# ---- users --------------------------------------------------------------------------------


class UsersQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    q: Annotated[str, Meta(min_length=1, max_length=64)] | None = None  # username prefix or user id
    status: Literal["active", "pending", "rejected", "deleted"] | None = None
    role: Literal["admin", "moderator"] | None = None
    guest: bool | None = None
    after: Annotated[str, Meta(max_length=64)] | None = None
    limit: Limit = 50


class UsersPage(msgspec.Struct, kw_only=True):
    users: list[Account]
    #: Pass as `after` for the next page; null on the last page.
    next_after: str | None = None


class SuspendBody(Body):
    reason: Reason
    duration_s: Duration | None = None


class ReasonBody(Body):
    reason: Reason | None = None


# ---- conversations ------------------------------------------------------------------------


class ConvInfo(msgspec.Struct, kw_only=True):
    id: str
    kind: str
    title: str | None
    topic: str | None
    visibility: str
    has_password: bool
    history: str
    owner: str
    created_at: int
    last_seq: int


class ConvInspection(msgspec.Struct, kw_only=True):
    conv: ConvInfo
    members: list[MemberRow]


class MemberActionBody(Body):
    """mute, kick, ban, unban: `user` in the conversation; `duration_s` for mute and ban."""

    user: Id
    reason: CommandReason
    duration_s: SanctionDuration | None = None


class RoleBody(Body):
    user: Id
    role: Literal["admin", "moderator", "member"]
    reason: CommandReason


class DeleteMessageBody(Body):
    reason: CommandReason


class ActionResult(msgspec.Struct, kw_only=True):
    """What chat_core answered the command published on the moderator's behalf."""

    op: str
    result: dict[str, Any] = {}


# ---- reports ------------------------------------------------------------------------------


class ReportsQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    status: Literal["open", "claimed", "resolved"] | None = None
    claimed_by: Id | None = None
    target_user: Id | None = None
    before: Annotated[int, Meta(ge=1, le=2**53)] | None = None
    limit: Limit = 50


class ReportsPage(msgspec.Struct, kw_only=True):
    reports: list[Report]
    next_before: int | None = None


class ResolveBody(Body):
    """dismiss: no action; delete_message: tombstone the reported message; suspend_user: suspend
    the reported user (`duration_s`, absent = indefinitely)."""

    action: Literal["dismiss", "delete_message", "suspend_user"]
    note: Note | None = None
    duration_s: Duration | None = None


class MessageReport(msgspec.Struct, tag="message", tag_field="kind", kw_only=True, forbid_unknown_fields=True):
    conv: Id
    seq: Seq
    reason: Reason


class UserReport(msgspec.Struct, tag="user", tag_field="kind", kw_only=True, forbid_unknown_fields=True):
    user: Id
    reason: Reason


ReportBody = MessageReport | UserReport


class ReportReceipt(msgspec.Struct, kw_only=True):
    id: int
    status: str


# ---- invites, audit -----------------------------------------------------------------------


class InviteBody(Body):
    count: Annotated[int, Meta(ge=1, le=100)] = 1
    expires_in_s: Duration | None = None


class InvitesQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    include_used: bool = False
    limit: Limit = 50


class InvitesPage(msgspec.Struct, kw_only=True):
    invites: list[Invite]


class AuditQueryParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    actor: Id | None = None
    target: Annotated[str, Meta(min_length=1, max_length=200)] | None = None
    action: Annotated[str, Meta(min_length=1, max_length=64)] | None = None
    since: Ms | None = None  # at >= since (ms)
    until: Ms | None = None  # at < until (ms)
    before: Annotated[int, Meta(ge=1, le=2**53)] | None = None  # paging: entries older than this id
    limit: Limit = 100


class AuditPage(msgspec.Struct, kw_only=True):
    entries: list[AuditEntry]
    next_before: int | None = None


# ---- privacy ------------------------------------------------------------------------------


class DataExport(msgspec.Struct, kw_only=True):
    """Everything Parley holds about the caller: the account, its conversations, what it sent."""

    exported_at: int
    account: Account
    memberships: list[ConvView]
    messages: list[Message]


class DeleteAccountBody(Body):
    """Guests have no password; everyone else confirms with theirs."""

    password: Annotated[str, Meta(max_length=256)] | None = None


class DeletionReceipt(msgspec.Struct, kw_only=True):
    user_id: str
    messages_deleted: int
    conversations_left: int
    #: Messages that could not be tombstoned now (chat_core refused them); listed by (conv, seq).
    messages_kept: list[tuple[str, int]] = []


# ---- errors -------------------------------------------------------------------------------


class FieldError(msgspec.Struct, kw_only=True):
    field: str
    message: str


class ErrorDetail(msgspec.Struct, kw_only=True):
    code: Literal["bad_request", "unauthorized", "forbidden", "not_found", "conflict", "rate_limited",
                  "too_large", "unavailable", "internal"]
    message: str
    fields: list[FieldError] | None = None


class ErrorBody(msgspec.Struct, kw_only=True):
    error: ErrorDetail
