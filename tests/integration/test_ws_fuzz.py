"""Hypothesis fuzzes the WebSocket against a real `parley dev`: frames of every op (from
parley/frames.py's types) and hostile ones (tests/frame_strategies.py), before and after `hello`.
Every frame gets its answer (`ok`, or `error` with a documented code and the frame's rid when it
had a readable one) or the session is closed with a documented close code; the server stays up
and logs no traceback."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parley.closecodes import CloseCode
from parley.sdk import Account, Client, register
from tests.conftest import ParleyProcess
from tests.frame_strategies import Frame, frames, other_frames, text_frames

pytestmark = [pytest.mark.integration, pytest.mark.fuzz]

#: docs/protocol.md, "WebSocket session", item 5; `internal` is a server bug, so not accepted here.
ERROR_CODES = {"bad_request", "unauthorized", "forbidden", "not_found", "conflict", "rate_limited", "too_large",
               "unavailable"}
CLOSE_CODES = set(CloseCode)
#: Longer than a write's own deadline (chat_core's answer, or `unavailable`, within 10 s).
ANSWER_TIMEOUT_S = 20.0
FUZZ = settings(deadline=None, database=None, suppress_health_check=list(HealthCheck))


def fuzz(max_examples: int) -> settings:
    return settings(FUZZ, max_examples=max_examples)


@dataclass(frozen=True)
class Target:
    server: ParleyProcess
    user: Account
    #: Ids the fuzzer's requests draw from: its conversations (one it owns, one it is a member
    #: of), itself and its peer, and an id that names nothing.
    ids: tuple[str, ...]


async def _setup(base_url: str) -> tuple[Account, tuple[str, ...]]:
    password = secrets.token_urlsafe(16)
    fuzzer = await register(base_url, f"wsfuzz_{secrets.token_hex(4)}", password)
    peer = await register(base_url, f"wspeer_{secrets.token_hex(4)}", password)
    convs = []
    for owner, member in ((fuzzer, peer), (peer, fuzzer)):
        client = await Client.connect(base_url, owner.token)
        try:
            conv = (await client.request("conv.create", kind="group", members=[member.user_id]))["conv"]["id"]
            await client.send(conv, "hello there")
            convs.append(conv)
        finally:
            await client.close()
    return fuzzer, (*convs, fuzzer.user_id, peer.user_id, "nothing")


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    proc = ParleyProcess(tmp_path_factory.mktemp("ws-fuzz") / "data", env={"PARLEY_IP_AUTH_BURST": "100000"})
    proc.start()
    try:
        yield Target(proc, *asyncio.run(_setup(proc.base_url)))
    finally:
        proc.stop()
    assert "Traceback" not in proc.log(), proc.log()


# ---- the oracle ---------------------------------------------------------------------------


async def send(ws: aiohttp.ClientWebSocketResponse, frame: Frame) -> None:
    if frame.binary:
        assert isinstance(frame.data, bytes)
        await ws.send_bytes(frame.data)
    elif isinstance(frame.data, bytes):  # a text frame whose bytes are not UTF-8
        await ws.send_frame(frame.data, aiohttp.WSMsgType.TEXT)
    else:
        await ws.send_str(frame.data)


def check_answer(reply: dict, frame: Frame) -> None:
    assert reply["op"] in ("ok", "error"), reply
    if reply["op"] == "error":
        assert reply["code"] in ERROR_CODES, reply
        assert isinstance(reply["message"], str) and reply["message"], reply
        if reply["code"] == "rate_limited":
            assert isinstance(reply["retry_after_ms"], int), reply
    if frame.rid_optional:
        assert reply.get("rid") in (None, frame.rid), reply
    else:
        assert reply.get("rid") == frame.rid, reply


async def answer_or_close(ws: aiohttp.ClientWebSocketResponse, frame: Frame) -> dict | None:
    """The frame's answer, or None when the server closed the session (with a documented code)."""
    while True:
        msg = await ws.receive(timeout=ANSWER_TIMEOUT_S)
        if msg.type is aiohttp.WSMsgType.TEXT:
            reply = json.loads(msg.data)
            if reply["op"] == "event":
                continue
            check_answer(reply, frame)
            return reply
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED), msg
        assert ws.close_code in CLOSE_CODES, (ws.close_code, msg)
        if frame.closes is not None:
            assert ws.close_code == frame.closes, (ws.close_code, msg)
        return None


def connect(http: aiohttp.ClientSession, base_url: str) -> Any:
    """`async with connect(...) as ws`: the socket is closed however the example ends."""
    return http.ws_connect(base_url.replace("http", "ws", 1) + "/v1/ws", protocols=("parley.v1.json",),
                           max_msg_size=0)


async def still_serving(http: aiohttp.ClientSession, target: Target) -> None:
    """A new session says hello and pings; the log holds no traceback."""
    async with connect(http, target.server.base_url) as ws:
        for rid, frame in (("h", {"op": "hello", "rid": "h", "token": target.user.token}),
                           ("p", {"op": "ping", "rid": "p"})):
            await ws.send_str(json.dumps(frame))
            reply = await answer_or_close(ws, Frame("", rid=rid))
            assert reply is not None and reply["op"] == "ok", reply
    assert "Traceback" not in target.server.log(), target.server.log()


# ---- the properties -----------------------------------------------------------------------

def _ids(target: Target) -> st.SearchStrategy[str]:
    return st.sampled_from(target.ids)


@fuzz(max_examples=300)
@given(data=st.data())
def test_every_frame_after_hello_is_answered_or_closes_the_session_with_a_documented_code(target, data):
    ids = _ids(target)
    sequence = data.draw(st.lists(frames(ids), min_size=1, max_size=4), label="frames")

    async def run() -> None:
        async with aiohttp.ClientSession() as http:
            async with connect(http, target.server.base_url) as ws:
                await ws.send_str(json.dumps({"op": "hello", "rid": "h", "token": target.user.token}))
                hello = await answer_or_close(ws, Frame("", rid="h"))
                assert hello is not None and hello["op"] == "ok", hello
                for frame in sequence:
                    await send(ws, frame)
                    answer = await answer_or_close(ws, frame)
                    if frame.closes is not None:
                        assert answer is None, (frame, answer)  # the protocol closes: no answer
                    if answer is None:
                        break
                else:  # still open: the session goes on
                    await ws.send_str(json.dumps({"op": "ping", "rid": "after"}))
                    assert (await answer_or_close(ws, Frame("", rid="after"))) is not None
            await still_serving(http, target)

    asyncio.run(run())


@fuzz(max_examples=100)
@given(data=st.data())
def test_a_first_frame_other_than_a_good_hello_gets_an_error_and_a_documented_close(target, data):
    ids = _ids(target)
    frame = data.draw(st.one_of(text_frames(ids), text_frames(ids, hostile=False), other_frames(ids)), label="frame")

    async def run() -> None:
        async with aiohttp.ClientSession() as http:
            async with connect(http, target.server.base_url) as ws:
                await send(ws, frame)
                answer = await answer_or_close(ws, frame)
                if answer is not None:  # an error (no hello, a bad token): the close follows it
                    assert answer["op"] == "error", answer
                    assert await answer_or_close(ws, frame) is None
                assert ws.close_code in CLOSE_CODES - {CloseCode.NORMAL}, ws.close_code
            await still_serving(http, target)

    asyncio.run(run())
