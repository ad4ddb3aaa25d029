"""CassandraStore's accounts, invites, reports and admin reads on the in-memory model of Cassandra
semantics (tests/cassandra_model.py): what the store contract does not reach, namely the bucketed
username search, accounts older than migration 0003, and the LWTs under racing stores (the model
runs two stores' requests interleaved; it does not model Paxos contention or timeouts)."""

from __future__ import annotations

import asyncio

import pytest

from parley.adapters.cassandra.moderation import REPORT_BUCKET
from parley.adapters.cassandra.partitions import MESSAGE_BUCKET
from parley.adapters.cassandra.store import CassandraStore
from parley.errors import Conflict, Forbidden
from parley.frames import Message
from parley.records import (
    AccountPatch, AccountQuery, ConvRow, CreateConv, InsertMessage, Invite, PutMember, MemberRow, Report,
    ReportQuery, SetConvHead,
)
from tests.cassandra_model import ModelSession


def pair() -> tuple[CassandraStore, CassandraStore]:
    """Two stores (two gateways) on one cluster, their requests interleaved."""
    session = ModelSession(interleave=True)
    return CassandraStore(session), CassandraStore(session)


def names(accounts: list) -> list[str]:
    return [a.username for a in accounts]


async def test_search_walks_the_buckets_in_username_order_and_pages_across_them():
    store = CassandraStore(ModelSession())
    everyone = sorted({f"{a}{b}{n}" for a in "abz" for b in "a_9" for n in ("x", "yy", "zzz")} | {"a.k", "b-q"})
    for i, name in enumerate(everyone):
        await store.create_user(f"u{i}", name, "h", i, status="pending" if i % 3 == 0 else "active")
    assert names(await store.search_accounts(AccountQuery(limit=1000))) == everyone
    assert names(await store.search_accounts(AccountQuery(prefix="a", limit=1000))) == [
        n for n in everyone if n.startswith("a")]  # one character: every bucket under "a"
    assert names(await store.search_accounts(AccountQuery(prefix="b_", limit=1000))) == [
        "b_x", "b_yy", "b_zzz"]  # `_` is literal, and the prefix is a range in one bucket
    seen: list[str] = []
    after = None
    while True:  # pages of 4 cross bucket boundaries
        page = await store.search_accounts(AccountQuery(after=after, limit=4))
        seen += names(page)
        if len(page) < 4:
            break
        after = page[-1].username
    assert seen == everyone
    pending = [n for i, n in enumerate(everyone) if i % 3 == 0]
    assert names(await store.search_accounts(AccountQuery(status="pending", limit=1000))) == pending
    assert names(await store.search_accounts(AccountQuery(status="pending", after=pending[2], limit=2))) == pending[3:5]


async def test_more_matches_than_a_page_of_the_index():
    store = CassandraStore(ModelSession())
    made = [f"user{i:04d}" for i in range(450)]
    await asyncio.gather(*(store.create_user(f"id{n}", n, "h", 1) for n in made))
    assert names(await store.search_accounts(AccountQuery(prefix="us", limit=1000))) == made
    assert names(await store.search_accounts(AccountQuery(prefix="user02", after="user0210", limit=5))) == made[211:216]


async def test_an_account_from_before_migration_0003_reads_as_active_and_is_indexed_once_updated():
    session = ModelSession()
    store = CassandraStore(session)
    # What 0001's create_user wrote: the name claim and the users row, nothing else.
    await session.execute("user_claim_name", ["old", "u-old", "h"])
    await session.execute("user_insert", ["u-old", "old", "h", 5])
    account = await store.account("u-old")
    assert account is not None and (account.status, account.role, account.token_gen, account.guest) == (
        "active", None, 0, False)
    assert await store.search_accounts(AccountQuery(prefix="old")) == []  # in no bucket yet
    after = await store.update_account("u-old", AccountPatch(role="moderator", cut_sessions=True))
    assert after is not None and (after.role, after.token_gen) == ("moderator", 1)
    assert names(await store.search_accounts(AccountQuery(prefix="old"))) == ["old"]


async def test_a_rename_frees_the_old_name_and_moves_the_search_entry():
    store = CassandraStore(ModelSession())
    await store.create_user("u1", "alice", "h1", 1)
    await store.update_account("u1", AccountPatch(username="zed", password_hash="h2"))
    assert await store.user_by_name("alice") is None and await store.user_by_name("zed") == ("u1", "h2")
    assert names(await store.search_accounts(AccountQuery())) == ["zed"]
    await store.create_user("u2", "alice", "h", 2)  # the old name is free again
    assert names(await store.search_accounts(AccountQuery())) == ["alice", "zed"]
    with pytest.raises(Conflict):
        await store.update_account("u1", AccountPatch(username="alice", role="admin"))
    assert (await store.account("u1")).role is None  # type: ignore[union-attr]  # a refused rename changes nothing
    await store.update_account("u1", AccountPatch(password_hash="h3"))  # login reads the hash by name
    assert await store.user_by_name("zed") == ("u1", "h3")


async def test_racing_session_cuts_all_land():
    a, b = pair()
    await a.create_user("u1", "alice", "h", 1)
    await asyncio.gather(*(s.update_account("u1", AccountPatch(cut_sessions=True)) for s in [a, b] * 5))
    assert (await a.account("u1")).token_gen == 10  # type: ignore[union-attr]
    assert a._s.calls.count("state_cas") > 10, "no compare-and-set lost: the race was not exercised"


async def test_two_registrations_with_one_code_spend_it_once():
    a, b = pair()
    await a.create_invite(Invite(code="k", created_by="mod", created_at=1))
    results = await asyncio.gather(a.create_user("u1", "alice", "h", 2, invite="k"),
                                   b.create_user("u2", "bob", "h", 2, invite="k"), return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["Forbidden", "NoneType"]
    loser, name = ("u2", "bob") if results[0] is None else ("u1", "alice")
    assert await a.account(loser) is None and await a.user_by_name(name) is None  # the name was given back
    (used,) = await a.invites(include_used=True, limit=10)
    assert used.used_by != loser


async def test_a_missing_code_is_never_created_by_spending_it():
    store = CassandraStore(ModelSession())
    with pytest.raises(Forbidden):
        await store.create_user("u1", "alice", "h", 1, invite="nope")
    assert await store.invites(include_used=True, limit=10) == []


async def test_racing_reports_get_dense_distinct_ids_and_are_listed_across_partitions():
    a, b = pair()
    report = Report(at=1, reporter="r", kind="user", target_user="t", reason="x")
    ids = await asyncio.gather(*(s.add_report(report) for s in [a, b] * 10))
    assert sorted(ids) == list(range(1, 21))
    assert a._s.calls.count("counter_cas") + a._s.calls.count("counter_init") > 20, "the race was not exercised"
    assert [r.id for r in await a.reports(ReportQuery(limit=100))] == list(range(20, 0, -1))


async def test_reports_are_listed_newest_first_across_id_partitions():
    session = ModelSession()
    store = CassandraStore(session)
    await session.execute("counter_init", ["reports", REPORT_BUCKET - 2])  # the next ids cross a partition
    made = [await store.add_report(Report(at=i, reporter="r", kind="user", target_user="t" if i % 2 else "s",
                                          reason="x")) for i in range(4)]
    assert made == [REPORT_BUCKET - 1, REPORT_BUCKET, REPORT_BUCKET + 1, REPORT_BUCKET + 2]
    assert [r.id for r in await store.reports(ReportQuery())] == made[::-1]
    assert [r.id for r in await store.reports(ReportQuery(before_id=made[2], limit=2))] == made[1::-1]
    assert [r.id for r in await store.reports(ReportQuery(target_user="t"))] == [made[3], made[1]]


async def test_racing_moderators_claim_and_resolve_a_report_once():
    a, b = pair()
    rid = await a.add_report(Report(at=1, reporter="r", kind="user", target_user="t", reason="x"))
    claims = await asyncio.gather(a.claim_report(rid, "m1", 2), b.claim_report(rid, "m2", 2))
    assert sum(c is not None for c in claims) == 1
    done = await asyncio.gather(a.resolve_report(rid, "m1", "dismiss", None, 3),
                                b.resolve_report(rid, "m2", "ban", None, 3))
    assert sum(d is not None for d in done) == 1
    assert await a.claim_report(rid + 1, "m1", 4) is None and await a.resolve_report(rid + 1, "m1", "x", None, 4) is None
    assert await a.report(rid + 1) is None  # a conditional update never creates a report


async def test_a_senders_messages_are_found_across_message_partitions():
    store = CassandraStore(ModelSession())
    conv = ConvRow(id="c1", kind="group", title=None, visibility="private", password_hash=None, history="full",
                   owner="a", created_at=1)
    seqs = [1, 2, MESSAGE_BUCKET - 1, MESSAGE_BUCKET, MESSAGE_BUCKET + 1]
    await store.apply([CreateConv(conv), PutMember(MemberRow(conv="c1", user="a", role="owner", visible_from=1,
                                                             read_seq=0, joined_at=1))]
                      + [InsertMessage(Message(conv="c1", seq=s, sender="a" if i % 2 == 0 else "b", ts=s,
                                               cmid=f"m{s}", text="t")) for i, s in enumerate(seqs)]
                      + [SetConvHead("c1", seqs[-1])])
    assert [m.seq for m in await store.sent_messages("a", "c1", 0, 10)] == [1, MESSAGE_BUCKET - 1, MESSAGE_BUCKET + 1]
    assert [m.seq for m in await store.sent_messages("a", "c1", 1, 1)] == [MESSAGE_BUCKET - 1]
    assert [m.seq for m in await store.sent_messages("b", "c1", MESSAGE_BUCKET - 1, 10)] == [MESSAGE_BUCKET]
