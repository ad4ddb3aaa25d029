"""The ports: each piece of infrastructure behind a small interface with two real adapters
(embedded default in-process / SQLite / a local directory; scale-out Kafka, NATS, Redis,
Cassandra, S3)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import msgspec

from parley.frames import Message
from parley.records import (
    Account, AccountPatch, AccountQuery, AttachmentRow, AuditEntry, AuditQuery, Call, ConvRow, Device, EventRecord, Facts,
    InvitationRow, Invite, MemberRow, Mutation, Needs, NotifySettings, RefreshToken, Report, ReportQuery, Revocation,
    SanctionRow, SessionFamily,
)


T_contra = TypeVar("T_contra", contravariant=True)
T = TypeVar("T")


class LogProducer(Protocol[T_contra]):
    """Producer side of a keyed log (`parley.commands`, `parley.events`). Raises Unavailable
    when it cannot take more, so the edge can answer `unavailable` instead of buffering."""

    async def publish(self, item: T_contra) -> None: ...

    async def publish_many(self, items: Sequence[T_contra]) -> None:
        """All of `items`, in order, sharing the broker's round trips; raises Unavailable if
        any is not acknowledged (some may have been: at least once)."""
        ...


PartitionsHook = Callable[[set[int]], None]


class LogConsumer(Protocol[T]):
    """Consumer side: batches in log order; `commit` once the batch's effects are durable."""

    def watch(self, on_assigned: PartitionsHook, on_revoked: PartitionsHook) -> None:
        """Be told which partitions this consumer gains and loses (a single-partition log
        reports partition 0 at once). `next_batch` may return [] after a change."""

    async def next_batch(self, max_n: int) -> list[T]: ...

    async def commit(self) -> None: ...


class Deliver(msgspec.Struct, tag=True, array_like=True):
    """An event frame for the listed users' sessions on one gateway."""

    users: list[str]
    frame: bytes
    #: The conversation whose members this event changed: the gateway checks again which
    #: conversation subjects its users' sessions need (see `Broadcast`).
    membership: str | None = None
    #: Stage timestamps (parley.hops), from its event's.
    t_ns: list[int] = []
    #: W3C traceparent of the delivery span that sent it (parley.tracing).
    trace: str | None = None


class Broadcast(msgspec.Struct, tag=True, array_like=True):
    """An event of a large conversation, published once on its subject (`parley.conv.<id>`):
    each gateway following it writes it to its own sessions of the conversation's members."""

    conv: str
    frame: bytes
    #: Stage timestamps (parley.hops), from its event's.
    t_ns: list[int] = []
    #: W3C traceparent of the delivery span that sent it (parley.tracing).
    trace: str | None = None


class Reply(msgspec.Struct, tag=True, array_like=True):
    """The answer to one command, for the session that sent it."""

    session: str
    rid: str
    frame: bytes


class Revoke(msgspec.Struct, tag=True, array_like=True):
    """End the live sessions a revocation names (close 4003), to each gateway holding the user."""

    revocation: Revocation


GatewayMessage = Deliver | Reply | Broadcast | Revoke


class GatewayBus(Protocol):
    """Messages to one gateway (NATS subject `parley.gw.<id>` when scaled out), and to every
    gateway following a large conversation (`parley.conv.<id>`)."""

    async def to_gateway(self, gateway_id: str, msg: GatewayMessage) -> None: ...
    async def publish_conv(self, conv: str, msg: Broadcast) -> None: ...


class ConvSubscriptions(Protocol):
    """One gateway's interest in conversation subjects: `Broadcast`s of a conversation reach
    it between its first `join_conv` and the matching last `leave_conv` (counted)."""

    async def join_conv(self, conv: str) -> None: ...
    async def leave_conv(self, conv: str) -> None: ...


class Presence(Protocol):
    """Where users are connected: user -> gateway ids."""

    async def locate(self, users: Sequence[str]) -> dict[str, list[str]]: ...


class Presigned(msgspec.Struct, kw_only=True):
    """A URL that grants one method on one object until `expires_at` (unix seconds). An upload
    must send `headers` exactly as given: they are part of the signature."""

    url: str
    method: str
    headers: dict[str, str]
    expires_at: int


class Attachments(Protocol):
    """Attachment bytes, reached by clients through presigned URLs (S3, or the gateway's own
    signed URLs on a local directory). Keys are attachment ids."""

    async def presign_put(self, key: str, mime: str, size: int, expires_s: int) -> Presigned: ...
    async def presign_get(self, key: str, name: str, mime: str, expires_s: int) -> Presigned: ...
    async def size(self, key: str) -> int | None: ...  # None: nothing stored under `key`
    #: The object's bytes (None: nothing stored), for the server's own use (thumbnails); the
    #: caller checks `size` against its bound first.
    async def read(self, key: str) -> bytes | None: ...
    #: An object the server makes (a thumbnail, an avatar), stored or replaced whole.
    async def put(self, key: str, data: bytes, mime: str) -> None: ...


class MessageStore(Protocol):
    """Conversations, their members and messages, and the outbox: chat_core's batched writes,
    their relay to the event log, and the reads of the gateway and delivery."""

    # chat_core, the single writer of a conversation
    async def prefetch(self, needs: Needs) -> Facts: ...
    async def apply(self, mutations: Sequence[Mutation]) -> list[int]: ...  # outbox ids, in order

    # outbox relay, per shard (= log partition): ids increase within a shard in write order
    async def outbox_after(self, shard: int, after_id: int, limit: int) -> list[tuple[int, EventRecord]]: ...
    async def relay_checkpoint(self, shard: int) -> int: ...
    async def set_relay_checkpoint(self, shard: int, outbox_id: int) -> None: ...  # never moves back

    # reads (gateway, delivery)
    async def membership(self, conv: str, user: str) -> tuple[ConvRow, MemberRow | None] | None: ...
    async def conv_list(self, user: str) -> list[tuple[ConvRow, MemberRow, str | None]]: ...  # + direct peer
    #: Each user's unread count over all their conversations (records.unread_count), in order.
    async def unread_counts(self, users: Sequence[str]) -> list[int]: ...
    async def message_pages(self, pages: Sequence[tuple[str, int, int, int, bool]]) -> list[list[Message]]: ...
    async def member_ids(self, conv: str) -> list[str]: ...
    async def block_peers(self, user: str) -> set[str]: ...  # users `user` blocks or is blocked by
    async def conv_members(self, conv: str) -> tuple[ConvRow, list[MemberRow]] | None: ...  # admin inspection
    #: The mutes and bans kept for `conv`, ended ones too, oldest first (`conv.sanctions`).
    async def sanctions(self, conv: str) -> list[SanctionRow]: ...
    #: The messages `user` sent in `conv` with seq > after_seq, ascending (privacy export/delete).
    async def sent_messages(self, user: str, conv: str, after_seq: int, limit: int) -> list[Message]: ...
    #: `user`'s pending invitations with their conversations, oldest first (`invite.list`).
    async def invitations(self, user: str) -> list[tuple[InvitationRow, ConvRow]]: ...


class AccountStore(Protocol):
    """User accounts: registration (spending an invite code), login's lookup, the account's
    role, status and suspension, and the admins' search."""

    async def create_user(self, user_id: str, username: str, password_hash: str, created_at: int, *,
                          status: str = "active", guest: bool = False, invite: str | None = None) -> None:
        """Conflict if the username is taken. With `invite`, the code is consumed in the same
        transaction (Forbidden if it is unknown, used or expired at `created_at`)."""

    async def user_by_name(self, username: str) -> tuple[str, str] | None: ...  # (user_id, password_hash)
    async def account(self, user_id: str) -> Account | None: ...
    async def account_by_name(self, username: str) -> Account | None: ...
    async def update_account(self, user_id: str, patch: AccountPatch) -> Account | None: ...  # after; None: no user
    async def search_accounts(self, query: AccountQuery) -> list[Account]: ...  # by username
    async def accounts(self, user_ids: Sequence[str]) -> list[Account]: ...  # those that exist, in the order asked
    async def search_directory(self, prefix: str, limit: int) -> list[Account]:
        """Active, discoverable, non-guest accounts with a search term (parley/profiles.py
        search_terms) starting with `prefix` (a search key), by username, at most `limit`."""
    #: The "who may add me" choices of those of `user_ids` who made one (the others have the
    #: default, WHO_MAY_ADD_DEFAULT): one read for a whole conv.create or conv.invite.
    async def who_may_add(self, user_ids: Collection[str]) -> dict[str, str]: ...


class ModerationStore(Protocol):
    """What moderators and admins keep: the audit log, the instance policy, invite codes and
    the reports queue."""

    # audit log: append-only (chat_core appends inside `MessageStore.apply` with PutAudit)
    async def append_audit(self, entries: Sequence[AuditEntry]) -> None: ...
    async def audit_entries(self, query: AuditQuery) -> list[AuditEntry]: ...  # newest first

    # instance policy: a small key -> JSON value map (moderation.instance_policy gives it its type)
    async def instance_policy(self) -> dict[str, Any]: ...
    async def set_instance_policy(self, values: Mapping[str, Any]) -> None: ...  # upserts the given keys

    # invite codes (single use: `AccountStore.create_user` spends one)
    async def create_invite(self, invite: Invite) -> None: ...
    async def invites(self, include_used: bool, limit: int) -> list[Invite]: ...  # newest first

    # reports: the moderators' queue
    async def add_report(self, report: Report) -> int: ...  # the new id
    async def report(self, report_id: int) -> Report | None: ...
    async def reports(self, query: ReportQuery) -> list[Report]: ...  # newest first
    #: Conditional: claims an open report (or re-claims one `moderator` holds); None otherwise.
    async def claim_report(self, report_id: int, moderator: str, at: int) -> Report | None: ...
    #: Conditional: resolves a report not yet resolved; None otherwise.
    async def resolve_report(self, report_id: int, moderator: str, resolution: str, note: str | None,
                             at: int) -> Report | None: ...


class AttachmentStore(Protocol):
    """What is known of each attachment (its conversation, uploader, name, type, size, whether
    its bytes arrived), written by the gateway; the bytes are `Attachments`'. chat_core reads
    the rows through `MessageStore.prefetch` (Needs.attachments)."""

    async def put_attachment(self, row: AttachmentRow) -> None: ...  # insert, or replace the row with this id
    async def attachment(self, attachment_id: str) -> AttachmentRow | None: ...


class SessionStore(Protocol):
    """Login sessions: one family per login with its refresh tokens (kept by their hash, each
    spent once for its successor), and the revocation log every gateway follows to end the live
    sessions that another process revoked. Families and tokens are kept until they expire (an
    adapter may drop them after `expires_at`), log entries for REVOCATION_LOG_KEEP_S."""

    async def create_session_family(self, family: SessionFamily, first: RefreshToken) -> None: ...
    async def session_family(self, user_id: str, family_id: str) -> SessionFamily | None: ...
    async def session_families(self, user_id: str) -> list[SessionFamily]: ...  # oldest first, revoked ones too
    #: `session_families` of each of `user_ids`, in the order asked (duplicates allowed): one read
    #: for the many members of a push decision.
    async def session_families_of(self, user_ids: Sequence[str]) -> list[list[SessionFamily]]: ...
    async def refresh_token(self, token_hash: str) -> RefreshToken | None: ...

    async def rotate_refresh_token(self, used: RefreshToken, successor: RefreshToken, at: int) -> bool:
        """Conditional: spends `used` at `at`, stores `successor` and moves its family's last use
        and expiry to `at` and the successor's. False if `used` was spent already: nothing moves
        (the caller revokes the family, so a successor stored on the way is of no use)."""

    async def revoke_session_family(self, user_id: str, family_id: str, at: int) -> bool:
        """False if the user has no such family or it was revoked already."""

    async def append_revocation(self, revocation: Revocation) -> None: ...
    async def revocations_since(self, at: int) -> list[Revocation]: ...  # at or after `at`, oldest first


class RingingCall(msgspec.Struct, frozen=True):
    conv: str
    call: str
    #: When its ring timeout ends it (ms since the epoch).
    deadline: int


class CallStore(Protocol):
    """What the calls role reads of the calls chat_core writes (`PutCall` in `MessageStore.apply`;
    the writer reads a conversation's live call with the conversation, `Needs.calls` by id)."""

    async def ringing_calls(self, since: int, until: int) -> list[RingingCall]:
        """The calls whose devices ring now, with a deadline in [since, until): their ring timers,
        armed again when the calls role starts. The deadline is fixed at the start of a call, so
        a caller that asks from well before now to the longest ring timeout from now gets all."""
        ...

    async def live_calls_of(self, user: str) -> list[str]:
        """The ids of the live calls `user` takes part in (`call_members`), in id order: the
        calls to take a suspended user out of."""
        ...

    async def call(self, call_id: str) -> Call | None:
        """The call as its writer last stored it, live or ended (None: no such call): what the
        push decision reads of a call whose ring it did not see start (delivery/call_rings.py)."""
        ...


class DeviceStore(Protocol):
    """Push devices by user, and each user's notification settings (issue 14). A token belongs
    to one device: registering it again replaces the device that had it, whoever owned it."""

    async def register_device(self, device: Device) -> None: ...
    async def devices(self, user_id: str) -> list[Device]: ...  # oldest first
    #: `devices` of each of `user_ids`, in the order asked (duplicates allowed).
    async def devices_of(self, user_ids: Sequence[str]) -> list[list[Device]]: ...
    async def delete_device(self, user_id: str, device_id: str) -> bool: ...  # False: the user has no such device
    #: Scope "" is the account-wide default; any other scope is a conversation id.
    async def notify_settings(self, user_id: str) -> dict[str, NotifySettings]: ...
    #: `notify_settings` of each of `user_ids`, in the order asked (duplicates allowed).
    async def notify_settings_of(self, user_ids: Sequence[str]) -> list[dict[str, NotifySettings]]: ...
    async def put_notify_settings(self, user_id: str, scope: str, settings: NotifySettings | None) -> None:
        """None removes the scope's settings (a conversation then follows the default)."""


class Store(MessageStore, AccountStore, ModerationStore, AttachmentStore, SessionStore, CallStore, DeviceStore,
            Protocol):
    """The whole store, as the composition roots open it: every concern on one database, and
    the readiness probe. A caller that needs one concern takes its port."""

    async def ping(self) -> None:
        """Returns once the store answers a trivial read; raises Unavailable when it cannot. It
        sets no bound of its own on the wait: the caller's readiness check does."""

    async def close(self) -> None: ...
