"""A user's privacy rights: export everything Parley holds about them, and delete the account.

Deletion first anonymizes the account row (the one step that can be refused: the rename) and
cuts its tokens, logins and live sessions, then tombstones the user's messages and leaves their conversations
through chat_core (the single writer of both), one `delete` per message and one `conv.leave` per
conversation. So a deletion that cannot happen changes nothing, and one that happened cannot be
undone by a refusal half-way. Messages in conversations the user had already left are not
reachable this way (chat_core refuses non-members); see the report."""

from __future__ import annotations

import asyncio

from moderation.admin.bodies import DataExport, DeletionReceipt
from moderation.admin.service import Commands
from parley.accounts import Principal, now_ms
from parley.auth import DELETED_PREFIX, Passwords
from parley.errors import Forbidden, NotFound, ParleyError
from parley.frames import Message
from parley.ports import Store
from parley.records import AccountPatch, AuditEntry, conv_view
from parley.session_families import Revoker

PAGE = 500
#: Deletes in flight at once while erasing an account (chat_core batches them).
CONCURRENCY = 64


async def sent_in(store: Store, user: str, conv: str) -> list[Message]:
    out: list[Message] = []
    after = 0
    while True:
        page = await store.sent_messages(user, conv, after, PAGE)
        out.extend(page)
        if len(page) < PAGE:
            return out
        after = page[-1].seq


async def export(store: Store, who: Principal) -> DataExport:
    convs = await store.conv_list(who.user_id)
    messages: list[Message] = []
    for row, _, _ in convs:
        messages.extend(await sent_in(store, who.user_id, row.id))
    return DataExport(exported_at=now_ms(), account=who.account,
                      memberships=[conv_view(row, member, peer) for row, member, peer in convs],
                      messages=messages)


async def delete_account(store: Store, commands: Commands, revoker: Revoker, passwords: Passwords,
                         who: Principal, password: str | None) -> DeletionReceipt:
    if not who.guest:
        found = await store.user_by_name(who.account.username)
        if found is None:
            raise NotFound("no such account")
        if password is None or not await asyncio.to_thread(passwords.verify, found[1], password):
            raise Forbidden("confirm the deletion with your password")
    user = who.user_id
    convs = await store.conv_list(user)
    # Conflict if the anonymized name is taken (only by an account registered before such names
    # were reserved): then nothing else has happened. Afterwards the account is gone for good,
    # with every token, login and live session of it.
    await revoker.cut_account(store, user, AccountPatch(
        username=DELETED_PREFIX + user, password_hash="", status="deleted", role=None, suspended_until=None,
        suspend_reason=None, display_name=None, avatar=None, status_text=None, discoverable=False),
        "account deleted")
    limit = asyncio.Semaphore(CONCURRENCY)
    kept: list[tuple[str, int]] = []
    deleted = 0

    async def tombstone(conv: str, seq: int) -> None:
        nonlocal deleted
        async with limit:
            try:
                await commands.run_op(user, "delete", {"conv": conv, "seq": seq})
                deleted += 1
            except ParleyError:
                kept.append((conv, seq))

    for row, _, _ in convs:
        live = [m.seq for m in await sent_in(store, user, row.id) if not m.deleted]
        await asyncio.gather(*(tombstone(row.id, seq) for seq in live))
    left = 0
    for row, _, _ in convs:
        try:
            await commands.run_op(user, "conv.leave", {"conv": row.id})
            left += 1
        except ParleyError:
            pass
    await store.append_audit([AuditEntry(at=now_ms(), actor=user, action="user.delete", target=user,
                                         details={"messages_deleted": deleted, "messages_kept": len(kept),
                                                  "conversations_left": left})])
    return DeletionReceipt(user_id=user, messages_deleted=deleted, conversations_left=left,
                           messages_kept=sorted(kept))
