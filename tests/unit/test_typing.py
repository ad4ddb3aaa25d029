"""Typing is throttled per session: at most one signal per conversation per `typing_interval_s`
fans out; the others are answered `ok` and dropped (300 of 300 once fanned out)."""

from __future__ import annotations

import asyncio

from gateway.hub import Hub
from gateway.session import Session
from gateway.request_limits import RequestLimits
from gateway.ws import WsEndpoint
from parley.errors import NotFound
from parley.limits import Limits
from parley.records import EventRecord
from tests.recording_transport import RecordingTransport


class Blocks:
    async def peers(self, user: str) -> frozenset[str]:
        return frozenset()


class MemberOf:
    """The gateway's reads: `user` may read the conversations listed."""

    def __init__(self, *convs: str) -> None:
        self._convs = convs
        self.blocks = Blocks()
        self.checked = 0

    async def readable(self, conv: str, user: str) -> None:
        self.checked += 1
        if conv not in self._convs:
            raise NotFound("no such conversation")


class Signals:
    def __init__(self) -> None:
        self.sent: list[EventRecord] = []

    async def send(self, record: EventRecord, *, skip_user: str | None = None,
                   skip: frozenset[str] = frozenset()) -> None:
        self.sent.append(record)


def typist(*convs: str) -> tuple[WsEndpoint, Session, RecordingTransport, Signals, MemberOf]:
    limits = Limits(typing_interval_s=3.0)
    hub = Hub("gw", limits)
    transport = RecordingTransport()
    session = Session("s1", "alice", None, None, transport, limits.send_queue_max)  # type: ignore[arg-type]
    hub.add(session)
    signals, reads = Signals(), MemberOf(*convs)
    ws = WsEndpoint(hub, reads, None, None, signals, None, limits,  # type: ignore[arg-type]
                    RequestLimits(limits), None)  # type: ignore[arg-type]
    return ws, session, transport, signals, reads


async def test_one_typing_signal_per_conversation_per_interval_fans_out(monkeypatch):
    now = [100.0]
    monkeypatch.setattr("gateway.ws.time.monotonic", lambda: now[0])
    ws, session, transport, signals, reads = typist("c1", "c2")
    for n in range(300):
        await ws._on_frame(session, f'{{"op":"typing","rid":"t{n}","conv":"c1"}}')
    await ws._on_frame(session, '{"op":"typing","rid":"other","conv":"c2"}')
    await asyncio.sleep(0)
    assert [r.conv for r in signals.sent] == ["c1", "c2"]
    assert reads.checked == 2  # the dropped ones cost no read either
    replies = transport.frames()
    assert len(replies) == 301 and all(r == {"op": "ok", "rid": r["rid"]} for r in replies)
    now[0] += 3.0
    await ws._on_frame(session, '{"op":"typing","rid":"later","conv":"c1"}')
    assert [r.conv for r in signals.sent] == ["c1", "c2", "c1"]


async def test_a_refused_typing_signal_is_refused_again(monkeypatch):
    ws, session, transport, signals, _ = typist()
    for rid in ("a", "b"):
        await ws._on_frame(session, f'{{"op":"typing","rid":"{rid}","conv":"c-secret"}}')
    await asyncio.sleep(0)
    assert [r["code"] for r in transport.frames()] == ["not_found", "not_found"] and signals.sent == []
