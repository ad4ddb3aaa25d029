"""The SQLite store's conversation list costs the same for a member of a small group and of a
huge channel: it is read at every login (the gateway's large-conversation check, presence, sync),
and once cost a walk of every member of every conversation the user was in. Counted in SQLite VM
steps (a progress handler), not in time."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from parley.adapters.sqlite.database import SqliteDatabase
from parley.adapters.sqlite.store import SqliteStore
from parley.records import ConvRow, CreateConv, MemberRow, PutMember

STEP = 100  # VM instructions per progress-handler call


def channel(conv: str, members: int) -> list[CreateConv | PutMember]:
    row = ConvRow(id=conv, kind="channel", title=conv, visibility="public", password_hash=None, history="joined",
                  owner="u0", created_at=1)
    return [CreateConv(row), *(PutMember(MemberRow(conv=conv, user=f"{conv}-u{i}", role="member", visible_from=1,
                                                   read_seq=0, joined_at=1)) for i in range(members))]


async def test_a_member_of_a_huge_channel_lists_their_conversations_as_cheaply_as_one_of_a_small_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    steps = [0]
    connect = SqliteDatabase._connect

    def counting(self: SqliteDatabase) -> sqlite3.Connection:
        conn = connect(self)
        conn.set_progress_handler(lambda: steps.__setitem__(0, steps[0] + 1), STEP)
        return conn

    monkeypatch.setattr(SqliteDatabase, "_connect", counting)
    store = SqliteStore(tmp_path / "parley.db", synchronous="NORMAL")
    await store.open()
    try:
        await store.apply([*channel("small", 30), *channel("huge", 5_000)])

        async def cost(user: str) -> int:
            steps[0] = 0
            [(row, _, peer)] = await store.conv_list(user)
            assert peer is None and row.kind == "channel"
            return steps[0]

        small, huge = await cost("small-u7"), await cost("huge-u7")
        assert huge <= 2 * small + 2, (small, huge)  # the old join: ~125 times the small one's
    finally:
        await store.close()
