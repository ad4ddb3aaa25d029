"""What a mass invite costs the embedded app, counted in store reads (never in time): a channel's
member list is read a few times per invite, not once per invited user (docs/loadtesting.md, the
100,000-member channel)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from loadtests.invite_bench import create_users
from parley.adapters.sqlite.messages import SqliteMessages
from parley.app.embedded import build_app
from parley.config import Settings
from parley.sdk import AppTransport, Client, register

BASE_URL = "http://parley.in-process"
INVITED = 200


@pytest.fixture
async def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, sqlite_synchronous="NORMAL")


@pytest.fixture
async def transport(settings: Settings) -> AsyncIterator[AppTransport]:
    async with AppTransport(await build_app(settings)) as app:
        yield app


async def test_inviting_many_users_reads_the_member_list_a_few_times_not_once_per_user(
        settings: Settings, transport: AppTransport, monkeypatch: pytest.MonkeyPatch):
    invited = await create_users(settings, INVITED)
    reads: list[str] = []
    member_ids = SqliteMessages.member_ids

    async def counted(self: SqliteMessages, conv: str) -> list[str]:
        reads.append(conv)
        return await member_ids(self, conv)

    monkeypatch.setattr(SqliteMessages, "member_ids", counted)
    owner = await register(BASE_URL, "owner", "correct horse", transport=transport)
    async with await Client.connect(BASE_URL, owner.token, transport=transport) as client:
        conv = (await client.request("conv.create", kind="channel", title="big"))["conv"]["id"]
        assert (await client.next_event("member.joined", conv=conv))["user"] == owner.user_id
        reply = await client.request("conv.invite", conv=conv, users=invited)
        joined = {(await client.next_event("member.joined", conv=conv))["user"] for _ in invited}
    assert sorted(reply["added"]) == sorted(invited) and joined == set(invited)
    # The invite's 400 events are relayed in one burst and delivered in one batch: one read for
    # the batch, one for the creation's member.joined (201 reads before, one per member.joined).
    assert reads.count(conv) <= 5
