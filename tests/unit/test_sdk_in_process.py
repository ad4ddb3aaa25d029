"""The SDK through its transport seam against an in-process `parley dev` app (no server process,
no port): accounts, a direct chat, a delivered event, and refusals as typed errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from parley.app.embedded import build_app
from parley.config import Settings
from parley.errors import Conflict, NotFound, Unauthorized
from parley.events import MessageNew
from parley.frames import Message
from parley.sdk import AppTransport, Client, register
from parley.sdk.events import typed

#: Any host will do: the in-process transport hands every request to the app.
BASE_URL = "http://parley.in-process"


@pytest.fixture
async def transport(tmp_path: Path) -> AsyncIterator[AppTransport]:
    async with AppTransport(await build_app(Settings(data_dir=tmp_path))) as app:
        yield app


async def test_a_message_sent_in_a_direct_chat_reaches_the_other_member_in_process(transport: AppTransport):
    alice = await register(BASE_URL, "alice", "correct horse", transport=transport)
    bob = await register(BASE_URL, "bob", "correct horse", transport=transport)
    async with await Client.connect(BASE_URL, alice.token, transport=transport) as a, \
            await Client.connect(BASE_URL, bob.token, transport=transport) as b:
        assert (a.user_id, b.user_id) == (alice.user_id, bob.user_id)
        conv = (await a.request("conv.create", kind="direct", members=[bob.user_id]))["conv"]["id"]
        ack = await a.send(conv, "hello bob")
        event = await b.next_event("message.new", conv=conv)
        assert event["message"]["text"] == "hello bob"
        assert (event["message"]["seq"], event["message"]["sender"]) == (ack["seq"], alice.user_id)
        assert typed(event) == MessageNew(message=Message(**event["message"]))
        await a.send(conv, "and typed")
        again = await b.next_typed(MessageNew, conv=conv)
        assert (again.message.text, again.message.seq) == ("and typed", ack["seq"] + 1)


async def test_refusals_arrive_as_the_error_class_of_their_wire_code(transport: AppTransport):
    alice = await register(BASE_URL, "alice", "correct horse", transport=transport)
    with pytest.raises(Conflict) as taken:  # a REST error body
        await register(BASE_URL, "alice", "another horse", transport=transport)
    assert (taken.value.code, taken.value.http_status) == ("conflict", 409)
    async with await Client.connect(BASE_URL, alice.token, transport=transport) as a:
        with pytest.raises(NotFound):  # an `error` frame
            await a.request("history", conv="c-nowhere")
    with pytest.raises(Unauthorized):  # a hello the server refuses
        await Client.connect(BASE_URL, "not a token", transport=transport)
