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


async def test_a_profile_is_kept_with_the_account_and_patched_field_by_field(reopen):
    store = await reopen()
    await store.create_user("u1", "alice", "hash", 1)
    fresh = await store.account("u1")
    assert fresh is not None and (fresh.display_name, fresh.avatar, fresh.status_text, fresh.discoverable) == (
        None, None, None, True)
    await store.update_account("u1", AccountPatch(display_name="Alice Liddell", status_text="down the hole"))
    after = await store.update_account("u1", AccountPatch(avatar="v1", discoverable=False, role="moderator"))
    assert after is not None and (after.display_name, after.avatar, after.status_text, after.discoverable,
                                  after.role) == ("Alice Liddell", "v1", "down the hole", False, "moderator")
    store = await reopen()  # durable
    again = await store.account("u1")
    assert again is not None and (again.display_name, again.avatar, again.discoverable) == ("Alice Liddell", "v1",
                                                                                           False)
    cleared = await store.update_account("u1", AccountPatch(status_text=None))
    assert cleared is not None and (cleared.status_text, cleared.display_name) == (None, "Alice Liddell")


async def test_accounts_are_read_in_batches_in_the_order_asked(reopen):
    store = await reopen()
    await store.create_user("u1", "alice", "hash", 1)
    await store.create_user("u2", "bob", "hash", 2)
    found = await store.accounts(["u2", "ghost", "u1", "u2"])
    assert [a.username for a in found] == ["bob", "alice"]
    assert await store.accounts([]) == []


async def test_the_directory_finds_names_and_display_name_words_by_prefix(reopen):
    store = await reopen()
    await store.create_user("u1", "alice", "h", 1)
    await store.create_user("u2", "bob", "h", 2)
    await store.create_user("u3", "zed", "h", 3)
    await store.update_account("u2", AccountPatch(display_name="Zoë Alvarez"))
    names = lambda found: [a.username for a in found]  # noqa: E731
    assert names(await store.search_directory("al", 10)) == ["alice", "bob"]  # a username, a display-name word
    assert names(await store.search_directory("zo", 10)) == ["bob"]  # accents and case folded
    assert names(await store.search_directory("zoe al", 10)) == ["bob"]  # the whole display name
    assert names(await store.search_directory("al", 1)) == ["alice"]
    await store.update_account("u2", AccountPatch(display_name="Robert"))  # old terms are gone
    assert names(await store.search_directory("zo", 10)) == []
    assert names(await store.search_directory("ro", 10)) == ["bob"]
    await store.update_account("u1", AccountPatch(username="alicia"))  # a rename moves its term
    assert names(await store.search_directory("alice", 10)) == []
    assert names(await store.search_directory("alic", 10)) == ["alicia"]


async def test_the_directory_lists_only_active_discoverable_members(reopen):
    store = await reopen()
    await store.create_user("u1", "ann", "h", 1)
    await store.create_user("u2", "anna", "h", 2, status="pending")
    await store.create_user("u3", "annette", "", 3, guest=True)
    await store.create_user("u4", "anne", "h", 4)
    await store.update_account("u4", AccountPatch(discoverable=False))
    assert [a.username for a in await store.search_directory("an", 10)] == ["ann"]
    await store.update_account("u4", AccountPatch(discoverable=True))
    assert [a.username for a in await store.search_directory("an", 10)] == ["ann", "anne"]
