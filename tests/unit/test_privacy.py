"""Account deletion against a real (SQLite) store: it completes, or nothing irreversible happens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from moderation.privacy import delete_account
from parley.accounts import Principal
from parley.auth import Claims
from parley.config import Settings
from parley.errors import Conflict
from parley.frames import Message
from parley.ports import Store
from parley.records import Account, ConvRow, CreateConv, InsertMessage, MemberRow, PutMember, SetConvHead
from parley.app.stores import open_store
from parley.session_families import Revoker


class RecordingCommands:
    """chat_core's side, recorded: what deletion asked it to do."""

    def __init__(self) -> None:
        self.ops: list[tuple[str, str, dict[str, Any]]] = []

    async def run_op(self, user: str, op: str, fields: dict[str, Any], *,
                     instance_role: str | None = None) -> dict[str, Any]:
        self.ops.append((user, op, fields))
        return {}


#: The deleting user's token (its claims do not matter to deletion).
CLAIMS = Claims(user_id="u-deleting", roles=(), expires_at=2**40)


async def cut_users(store: Store) -> list[str]:
    """Whose live sessions were ended: the users in the revocation log."""
    return [r.user_id for r in await store.revocations_since(0)]


class PlainPasswords:
    def verify(self, hashed: str, password: str) -> bool:
        return hashed == "hash of " + password


async def owner_of_a_group_with_a_message(store: Store, user: str) -> Account:
    """`user` (password "pw") owns group c1, where they sent message 1."""
    await store.create_user(user, user.removeprefix("u-"), "hash of pw", 1)
    await store.apply([
        CreateConv(ConvRow(id="c1", kind="group", title=None, visibility="private", password_hash=None,
                           history="joined", owner=user, created_at=3)),
        PutMember(MemberRow(conv="c1", user=user, role="owner", visible_from=1, read_seq=0, joined_at=3)),
        InsertMessage(Message(conv="c1", seq=1, sender=user, ts=4, cmid="m1", text="mine")),
        SetConvHead("c1", 1),
    ])
    account = await store.account(user)
    assert account is not None
    return account


async def test_a_deletion_that_cannot_rename_the_account_tombstones_nothing(tmp_path: Path):
    store = await open_store(Settings(data_dir=tmp_path, sqlite_synchronous="NORMAL"))
    try:
        victim = await owner_of_a_group_with_a_message(store, "u-victim")
        # A name taken before such names were reserved: the rename to it must fail.
        await store.create_user("u-squatter", "deleted-u-victim", "hash of x", 2)
        commands = RecordingCommands()
        with pytest.raises(Conflict):
            await delete_account(store, commands, Revoker(store), PlainPasswords(),  # type: ignore[arg-type]
                                 Principal("u-victim", None, False, victim, CLAIMS), "pw")
        assert commands.ops == [] and await cut_users(store) == []  # no message tombstoned, no conversation left
        after = await store.account("u-victim")
        assert after is not None and (after.username, after.status, after.token_gen) == ("victim", "active", 0)
    finally:
        await store.close()


async def test_a_deletion_renames_first_then_tombstones_and_leaves(tmp_path: Path):
    store = await open_store(Settings(data_dir=tmp_path, sqlite_synchronous="NORMAL"))
    try:
        alice = await owner_of_a_group_with_a_message(store, "u-alice")
        commands = RecordingCommands()
        receipt = await delete_account(store, commands, Revoker(store), PlainPasswords(),  # type: ignore[arg-type]
                                       Principal("u-alice", None, False, alice, CLAIMS), "pw")
        assert [(op, fields) for _, op, fields in commands.ops] == [
            ("delete", {"conv": "c1", "seq": 1}), ("conv.leave", {"conv": "c1"})]
        assert (receipt.messages_deleted, receipt.conversations_left, await cut_users(store)) == (1, 1, ["u-alice"])
        gone = await store.account("u-alice")
        assert gone is not None and (gone.username, gone.status) == ("deleted-u-alice", "deleted")
    finally:
        await store.close()
