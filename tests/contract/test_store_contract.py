"""The store contract: every Store adapter must pass these unchanged.

Stores under test:
- "sqlite": the embedded store, on a temporary file.
- "cassandra": CassandraStore on a real Cassandra or ScyllaDB cluster, only when
  PARLEY_TEST_CASSANDRA_HOSTS is set (a fresh keyspace per run, migrated with the runner and
  dropped at the end: tests/cassandra_cluster.py); otherwise these runs are reported as skipped.
- "cassandra-model": CassandraStore's own code (planning, claims, paging, id clocks) on the
  in-memory model of Cassandra semantics (tests/cassandra_model.py). It proves the
  adapter logic against the model, not against Cassandra."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import msgspec
import pytest

from parley.adapters.cassandra.store import CassandraStore
from tests.cassandra_model import ModelSession
from parley.adapters.sqlite.store import SqliteStore
from parley.errors import Conflict, Forbidden
from parley.frames import Message
from parley.ports import Store
from parley.records import (
    AccountPatch, AccountQuery, AttachmentRow, AuditEntry, AuditQuery, ConvRow, CreateConv, DropBlock, DropMember,
    DropSanction, EventRecord, InsertMessage, Invite, MemberRow, Needs, PutAudit, PutBlock, PutMember, PutOutbox,
    PutSanction, Report, ReportQuery, SanctionRow, SetConvHead, SetReaction, SetReadSeq, UpdateConv, UpdateMessage,
)


async def _sqlite(path: Path) -> SqliteStore:
    store = SqliteStore(path / "parley.db", synchronous="NORMAL")
    await store.open()
    return store

_models: dict[Path, ModelSession] = {}


async def _cassandra_model(path: Path) -> Store:
    # Reopening shares the model's tables, as a second connection to one cluster would.
    return CassandraStore(_models.setdefault(path, ModelSession()))


STORES: dict[str, Callable[[Path], Awaitable[Store]]] = {"sqlite": _sqlite, "cassandra-model": _cassandra_model}


@pytest.fixture(params=[*sorted(STORES), "cassandra"])
async def reopen(request: pytest.FixtureRequest,
                 tmp_path: Path) -> AsyncIterator[Callable[[], Awaitable[Store]]]:
    """Opens the store under test (again, for durability checks); closes every copy at the end."""
    opened: list[Store] = []
    factory: Callable[[Path], Awaitable[Store]]
    if request.param == "cassandra":
        factory = request.getfixturevalue("cassandra_store_factory")
    else:
        factory = STORES[request.param]

    async def open_() -> Store:
        store = await factory(tmp_path)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        await store.close()


def conv_row(conv: str = "c1", last_seq: int = 0) -> ConvRow:
    return ConvRow(id=conv, kind="group", title="t", visibility="private", password_hash=None, history="joined",
                   owner="a", created_at=1, last_seq=last_seq)


def member(user: str, conv: str = "c1", role: str = "member") -> MemberRow:
    return MemberRow(conv=conv, user=user, role=role, visible_from=1, read_seq=0, joined_at=1)


def message(seq: int, sender: str = "a", cmid: str | None = None, conv: str = "c1") -> Message:
    return Message(conv=conv, seq=seq, sender=sender, ts=seq * 10, cmid=cmid or f"m{seq}", text=f"text {seq}",
                   mentions=["b"] if seq == 1 else [])


def record(n: int) -> EventRecord:
    return EventRecord("c1", b'{"n":%d}' % n)


async def seeded(open_: Callable[[], Awaitable[Store]]) -> Store:
    store = await open_()
    await store.apply([CreateConv(conv_row()), PutMember(member("a", role="owner")), PutMember(member("b"))])
    return store


async def test_a_batch_is_read_back_whole(reopen):
    store = await seeded(reopen)
    ids = await store.apply([
        InsertMessage(message(1)), InsertMessage(message(2)), SetConvHead("c1", 2), SetReadSeq("c1", "a", 2),
        SetReaction("c1", 1, "👍", "b", True), UpdateMessage("c1", 2, "edited", 99, False),
        PutOutbox(record(1)), PutOutbox(record(2)),
    ])
    assert len(ids) == 2 and ids[1] == ids[0] + 1
    facts = await store.prefetch(Needs(convs={"c1"}, users={"a", "zz"}, idem={("c1", "a", "m1"), ("c1", "b", "m1")},
                                       messages={("c1", 1), ("c1", 2), ("c1", 3)}))
    state = facts.convs["c1"]
    assert state.row.last_seq == 2 and set(state.members) == {"a", "b"}
    assert state.members["a"].read_seq == 2 and state.members["a"].role == "owner"
    assert facts.users == set()  # accounts are separate: no user "a" was created
    assert facts.idem == {("c1", "a", "m1"): (1, 10)}
    assert facts.messages[("c1", 1)].reactions == {"👍": ["b"]} and facts.messages[("c1", 1)].mentions == ["b"]
    assert (facts.messages[("c1", 2)].text, facts.messages[("c1", 2)].edited_at) == ("edited", 99)
    assert ("c1", 3) not in facts.messages


async def test_a_seq_is_never_stored_twice_and_a_rejected_batch_leaves_nothing(reopen):
    store = await seeded(reopen)
    await store.apply([InsertMessage(message(1)), SetConvHead("c1", 1)])
    with pytest.raises(Conflict):
        await store.apply([InsertMessage(message(2)), InsertMessage(message(1, cmid="other")), PutOutbox(record(9))])
    (page,) = await store.message_pages([("c1", 1, 100, 10, False)])
    assert [m.seq for m in page] == [1]
    assert await store.outbox_after(0, 0, 10) == []


async def test_an_idempotency_key_is_never_stored_twice(reopen):
    store = await seeded(reopen)
    await store.apply([InsertMessage(message(1, cmid="k"))])
    with pytest.raises(Conflict):
        await store.apply([InsertMessage(message(2, cmid="k"))])
    await store.apply([InsertMessage(message(2, sender="b", cmid="k"))])  # per sender


async def test_pages_are_ascending_and_cut_at_either_end(reopen):
    store = await seeded(reopen)
    await store.apply([InsertMessage(message(s)) for s in range(1, 11)])
    newest, oldest, window = await store.message_pages([
        ("c1", 1, 2**62, 3, True), ("c1", 1, 2**62, 3, False), ("c1", 4, 8, 10, True)])
    assert [m.seq for m in newest] == [8, 9, 10]
    assert [m.seq for m in oldest] == [1, 2, 3]
    assert [m.seq for m in window] == [4, 5, 6, 7]


async def test_the_outbox_replays_past_the_checkpoint_in_order(reopen):
    store = await seeded(reopen)
    ids = await store.apply([PutOutbox(record(n)) for n in range(5)])
    assert await store.relay_checkpoint(0) == 0
    await store.set_relay_checkpoint(0, ids[2])
    assert await store.relay_checkpoint(0) == ids[2]
    rest = await store.outbox_after(0, ids[2], 10)
    assert [i for i, _ in rest] == ids[3:] and [r.frame for _, r in rest] == [b'{"n":3}', b'{"n":4}']


async def test_outbox_shards_have_their_own_rows_and_checkpoints(reopen):
    store = await seeded(reopen)
    ids = await store.apply([PutOutbox(record(n), shard=n % 2) for n in range(6)])
    even, odd = ids[0::2], ids[1::2]
    assert [i for i, _ in await store.outbox_after(0, 0, 10)] == even
    assert [i for i, _ in await store.outbox_after(1, 0, 10)] == odd
    await store.set_relay_checkpoint(1, odd[-1])
    assert await store.relay_checkpoint(0) == 0  # the other shard's relay did not move this one
    assert [i for i, _ in await store.outbox_after(0, 0, 10)] == even
    assert await store.outbox_after(1, odd[-1], 10) == []


async def test_a_checkpoint_never_moves_back(reopen):
    """A relay that lost its shard may record a checkpoint after the new owner did."""
    store = await seeded(reopen)
    ids = await store.apply([PutOutbox(record(n)) for n in range(4)])
    await store.set_relay_checkpoint(0, ids[3])
    await store.set_relay_checkpoint(0, ids[1])
    assert await store.relay_checkpoint(0) == ids[3]
    assert await store.outbox_after(0, ids[1], 10) == []


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


async def test_membership_and_lists_follow_member_changes(reopen):
    store = await seeded(reopen)
    assert sorted(await store.member_ids("c1")) == ["a", "b"]
    await store.apply([DropMember("c1", "b")])
    assert await store.member_ids("c1") == ["a"]
    found = await store.membership("c1", "b")
    assert found is not None and found[1] is None
    assert await store.membership("nope", "a") is None
    assert [(c.id, m.role, peer) for c, m, peer in await store.conv_list("a")] == [("c1", "owner", None)]


async def test_the_conv_list_names_the_peer_of_a_direct_conversation(reopen):
    store = await reopen()
    direct = ConvRow(id="d1", kind="direct", title=None, visibility="private", password_hash=None,
                     history="full", owner="a", created_at=1)
    await store.apply([CreateConv(direct), PutMember(member("a", conv="d1")), PutMember(member("b", conv="d1"))])
    assert [(c.id, peer) for c, _, peer in await store.conv_list("a")] == [("d1", "b")]
    assert [(c.id, peer) for c, _, peer in await store.conv_list("b")] == [("d1", "a")]
    await store.apply([DropMember("d1", "b")])
    assert [(c.id, peer) for c, _, peer in await store.conv_list("a")] == [("d1", None)]


async def test_usernames_are_unique(reopen):
    store = await reopen()
    await store.create_user("u1", "alice", "hash", 1)
    with pytest.raises(Conflict):
        await store.create_user("u2", "alice", "hash", 1)
    assert await store.user_by_name("alice") == ("u1", "hash")
    assert await store.user_by_name("bob") is None


async def test_an_attachment_is_read_back_by_id_replaced_whole_and_prefetched(reopen):
    store = await reopen()
    row = AttachmentRow(id="a1", conv="c1", uploader="u1", name="café menu.pdf", mime="application/pdf",
                        size=25 * 1024 * 1024, created_at=7)
    await store.put_attachment(row)
    assert await store.attachment("a1") == row and row.uploaded is False
    await store.put_attachment(AttachmentRow(**{**msgspec.structs.asdict(row), "uploaded": True}))
    assert (await store.attachment("a1")).uploaded is True
    assert await store.attachment("a2") is None
    facts = await store.prefetch(Needs(attachments={"a1", "a2"}))
    assert list(facts.attachments) == ["a1"] and facts.attachments["a1"].uploaded is True
    await store.close()
    again = await reopen()
    assert (await again.attachment("a1")).name == "café menu.pdf"


async def test_what_was_applied_survives_reopening(reopen):
    store = await seeded(reopen)
    await store.apply([InsertMessage(message(1)), SetConvHead("c1", 1)])
    await store.close()
    again = await reopen()
    facts = await again.prefetch(Needs(convs={"c1"}, idem={("c1", "a", "m1")}))
    assert facts.convs["c1"].row.last_seq == 1 and facts.idem == {("c1", "a", "m1"): (1, 10)}


async def test_conversation_settings_and_pins_are_read_back_with_the_conversation(reopen):
    store = await seeded(reopen)
    row = conv_row(last_seq=0)
    row.title, row.visibility, row.password_hash, row.history = "renamed", "public", "argon2-hash", "full"
    row.slow_mode_s, row.read_only, row.permissions, row.pinned = 30, True, {"pin": "member"}, [3, 1]
    await store.apply([SetConvHead("c1", 5), UpdateConv(row)])
    store = await reopen()
    got = (await store.prefetch(Needs(convs={"c1"}))).convs["c1"].row
    assert got == ConvRow(id="c1", kind="group", title="renamed", visibility="public", password_hash="argon2-hash",
                          history="full", owner="a", created_at=1, last_seq=5, slow_mode_s=30, read_only=True,
                          permissions={"pin": "member"}, pinned=[3, 1])  # the head is not the settings' to move
    found = await store.membership("c1", "a")
    assert found is not None and found[0] == got
    assert [(c.slow_mode_s, c.pinned) for c, _, _ in await store.conv_list("a")] == [(30, [3, 1])]


def sanction(user: str, kind: str, until: int = 10**12) -> SanctionRow:
    return SanctionRow(conv="c1", user=user, kind=kind, until=until, by="a", at=5, reason=f"{kind} reason")


async def test_mutes_and_bans_come_with_their_conversation_and_outlive_membership(reopen):
    store = await seeded(reopen)
    await store.apply([PutSanction(sanction("b", "mute")), PutSanction(sanction("x", "ban")),
                       PutSanction(sanction("b", "mute", until=99)), DropMember("c1", "b")])
    store = await reopen()  # durable: a ban survives a restart
    state = (await store.prefetch(Needs(convs={"c1"}))).convs["c1"]
    assert state.mutes == {"b": sanction("b", "mute", until=99)}  # the last one of a kind wins
    assert state.bans == {"x": sanction("x", "ban")}
    await store.apply([DropSanction("c1", "x", "ban"), DropSanction("c1", "b", "ban")])
    state = (await store.prefetch(Needs(convs={"c1"}))).convs["c1"]
    assert state.bans == {} and set(state.mutes) == {"b"}


async def test_blocks_are_read_either_way_and_a_direct_conversation_carries_its_pairs(reopen):
    store = await reopen()
    direct = ConvRow(id="d1", kind="direct", title=None, visibility="private", password_hash=None,
                     history="full", owner="a", created_at=1)
    await store.apply([CreateConv(direct), PutMember(member("a", conv="d1")), PutMember(member("b", conv="d1")),
                       PutBlock("b", "a", 7), PutBlock("b", "a", 8), PutBlock("c", "b", 9)])
    facts = await store.prefetch(Needs(convs={"d1"}, blocks={("a", "b"), ("a", "c"), ("c", "b")}))
    assert facts.convs["d1"].blocks == {("b", "a")}
    assert facts.blocks == {("b", "a"), ("c", "b")}
    assert await store.block_peers("b") == {"a", "c"} and await store.block_peers("a") == {"b"}
    await store.apply([DropBlock("b", "a"), DropBlock("a", "b")])
    assert (await store.prefetch(Needs(convs={"d1"}))).convs["d1"].blocks == set()
    assert await store.block_peers("a") == set()


async def test_account_creation_times_are_prefetched(reopen):
    store = await reopen()
    await store.create_user("u1", "alice", "hash", 1234)
    facts = await store.prefetch(Needs(accounts={"u1", "ghost"}))
    assert facts.created_at == {"u1": 1234}


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


async def test_a_conversation_is_inspected_with_its_members_and_a_senders_messages_are_paged(reopen):
    store = await seeded(reopen)
    await store.apply([InsertMessage(message(1)), InsertMessage(message(2, sender="b")), InsertMessage(message(3)),
                       SetConvHead("c1", 3)])
    found = await store.conv_members("c1")
    assert found is not None and found[0].last_seq == 3
    assert sorted((m.user, m.role) for m in found[1]) == [("a", "owner"), ("b", "member")]
    assert await store.conv_members("nope") is None
    assert [m.seq for m in await store.sent_messages("a", "c1", 0, 10)] == [1, 3]
    assert [m.seq for m in await store.sent_messages("a", "c1", 1, 10)] == [3]
    assert [m.seq for m in await store.sent_messages("a", "c1", 0, 1)] == [1]
    assert await store.sent_messages("b", "other", 0, 10) == []
    assert msgspec.structs.asdict(found[0])["id"] == "c1"


async def test_an_open_store_answers_the_readiness_probe(reopen):
    store = await reopen()
    await store.ping()  # returns: the store answers
