"""The store contract, AccountStore: unique usernames, what an account carries, the admins' search,
and registration with an invite code. Every adapter must pass these unchanged (conftest.py)."""

from __future__ import annotations

import pytest

from parley.errors import Conflict, Forbidden
from parley.records import AccountPatch, AccountQuery, Invite, Needs

async def test_usernames_are_unique(reopen):
    store = await reopen()
    await store.create_user("u1", "alice", "hash", 1)
    with pytest.raises(Conflict):
        await store.create_user("u2", "alice", "hash", 1)
    assert await store.user_by_name("alice") == ("u1", "hash")
    assert await store.user_by_name("bob") is None



async def test_account_creation_times_are_prefetched(reopen):
    store = await reopen()
    await store.create_user("u1", "alice", "hash", 1234)
    facts = await store.prefetch(Needs(accounts={"u1", "ghost"}))
    assert facts.created_at == {"u1": 1234}



async def test_an_account_keeps_who_may_add_it(reopen):
    store = await reopen()
    for n, name in enumerate(("alice", "bob", "carol")):
        await store.create_user(f"u{n}", name, "hash", n)
    assert (await store.account("u0")).who_may_add == "anyone"  # type: ignore[union-attr]  # the default
    after = await store.update_account("u0", AccountPatch(who_may_add="contacts"))
    assert after is not None and after.who_may_add == "contacts"
    after = await store.update_account("u1", AccountPatch(who_may_add="nobody", role="moderator"))
    assert after is not None and (after.who_may_add, after.role) == ("nobody", "moderator")
    after = await store.update_account("u1", AccountPatch(role=None))
    assert after is not None and after.who_may_add == "nobody"  # UNSET stays
    store = await reopen()
    assert (await store.account("u0")).who_may_add == "contacts"  # type: ignore[union-attr]
    assert await store.who_may_add(["u0", "u1", "u2", "ghost"]) == {"u0": "contacts", "u1": "nobody"}
    assert await store.who_may_add([]) == {}


async def test_accounts_carry_role_status_suspension_and_token_generation(reopen):
    store = await reopen()
    await store.create_user("u1", "alice", "hash", 1)
    await store.create_user("u2", "bob", "hash", 2, status="pending")
    await store.create_user("u3", "guest-1", "", 3, guest=True)
    alice = await store.account("u1")
    assert alice is not None and (alice.username, alice.role, alice.status, alice.guest, alice.token_gen) == (
        "alice", None, "active", False, 0)
    assert (await store.account_by_name("bob")).status == "pending"  # type: ignore[union-attr]
    assert (await store.account("u3")).guest is True  # type: ignore[union-attr]
    assert await store.account("nobody") is None
    after = await store.update_account("u1", AccountPatch(role="moderator", suspended_until=99, suspend_reason="spam",
                                                          cut_sessions=True))
    assert after is not None and (after.role, after.suspended_until, after.suspend_reason, after.token_gen) == (
        "moderator", 99, "spam", 1)
    after = await store.update_account("u1", AccountPatch(suspended_until=None, cut_sessions=True))
    assert after is not None and (after.role, after.suspended_until, after.suspend_reason, after.token_gen) == (
        "moderator", None, "spam", 2)  # UNSET fields stay
    assert await store.update_account("nobody", AccountPatch(role="admin")) is None
    with pytest.raises(Conflict):
        await store.update_account("u2", AccountPatch(username="alice"))
    await store.update_account("u2", AccountPatch(username="deleted-u2", password_hash=""))
    assert await store.user_by_name("deleted-u2") == ("u2", "")
    store = await reopen()  # durable
    assert (await store.account("u1")).token_gen == 2  # type: ignore[union-attr]



async def test_accounts_are_searched_by_prefix_or_id_and_paged_by_username(reopen):
    store = await reopen()
    for i, name in enumerate(["ann", "anna", "an_x", "bob", "annette"]):
        await store.create_user(f"u{i}", name, "h", i, status="pending" if name == "anna" else "active")
    await store.update_account("u3", AccountPatch(role="admin"))
    names = lambda accounts: [a.username for a in accounts]  # noqa: E731
    assert names(await store.search_accounts(AccountQuery(prefix="ann"))) == ["ann", "anna", "annette"]
    assert names(await store.search_accounts(AccountQuery(prefix="an_"))) == ["an_x"]  # `_` is literal
    assert names(await store.search_accounts(AccountQuery(prefix="u3"))) == ["bob"]  # an exact id
    assert names(await store.search_accounts(AccountQuery(status="pending"))) == ["anna"]
    assert names(await store.search_accounts(AccountQuery(role="admin"))) == ["bob"]
    first = await store.search_accounts(AccountQuery(limit=2))
    rest = await store.search_accounts(AccountQuery(after=first[-1].username, limit=10))
    assert names(first) + names(rest) == ["an_x", "ann", "anna", "annette", "bob"]



async def test_an_invite_is_consumed_once_with_the_account_it_creates(reopen):
    store = await reopen()
    await store.create_invite(Invite(code="k1", created_by="mod", created_at=1))
    await store.create_invite(Invite(code="old", created_by="mod", created_at=1, expires_at=10))
    with pytest.raises(Conflict):
        await store.create_invite(Invite(code="k1", created_by="mod", created_at=2))
    await store.create_user("u1", "alice", "h", 5, invite="k1")
    with pytest.raises(Forbidden):
        await store.create_user("u2", "bob", "h", 6, invite="k1")  # used
    with pytest.raises(Forbidden):
        await store.create_user("u2", "bob", "h", 11, invite="old")  # expired
    with pytest.raises(Forbidden):
        await store.create_user("u2", "bob", "h", 6, invite="nope")
    assert await store.account("u2") is None  # nothing of a refused registration is stored
    await store.create_invite(Invite(code="k2", created_by="mod", created_at=3))
    with pytest.raises(Conflict):
        await store.create_user("u9", "alice", "h", 6, invite="k2")  # name taken: the code is not spent
    assert [i.code for i in await store.invites(include_used=False, limit=10)] == ["k2", "old"]
    used = [i for i in await store.invites(include_used=True, limit=10) if i.code == "k1"]
    assert used[0].used_by == "u1" and used[0].used_at == 5
