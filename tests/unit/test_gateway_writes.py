"""The gateway's side of a write: its reply is matched however fast chat_core answers, and what it
publishes carries no room password, only the hash the gateway checked or made."""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY

from gateway.hub import Hub
from gateway.room_passwords import RoomPasswords
from gateway.session import Session
from gateway.write_facts import WriteFacts
from gateway.request_limits import RequestLimits
from gateway.ws import WsEndpoint
from parley import frames as F
from parley.errors import Unavailable
from parley.frames import encode
from parley.limits import Limits
from parley.ports import Reply
from parley.ratelimit import Limiter
from parley.records import Command, EdgeFacts
from tests.recording_transport import RecordingTransport
from tests.unit.test_room_passwords import CountingPasswords, OneRoom


class AnsweringLog:
    """A command log whose consumer answers before publish() returns, like a fast broker round trip."""

    def __init__(self, hub: Hub, fail: bool = False) -> None:
        self._hub = hub
        self._fail = fail
        self.published: list[Command] = []

    async def publish(self, cmd: Command) -> None:
        self.published.append(cmd)
        if self._fail:
            raise Unavailable("log down", retry_after_ms=100) from TimeoutError()
        self._hub.on_message(Reply(cmd.session, cmd.body.rid, encode({"op": "ok", "rid": cmd.body.rid, "seq": 1})))


class NoChoices:
    """Accounts where nobody chose who may add them."""

    async def who_may_add(self, user_ids: object) -> dict[str, str]:
        return {}


def endpoint(fail: bool = False, log: list[Command] | None = None) -> tuple[WsEndpoint, Session, RecordingTransport]:
    limits = Limits()
    hub = Hub("gw", limits)
    transport = RecordingTransport()
    session = Session("s1", "alice", None, None, transport, limits.send_queue_max)  # type: ignore[arg-type]
    hub.add(session)
    commands = AnsweringLog(hub, fail)
    if log is not None:
        commands.published = log
    rooms = RoomPasswords(OneRoom(), CountingPasswords(), Limiter("room password", 10, 60),  # type: ignore[arg-type]
                          Limiter("room password per room", 10, 60), threads=1, queue_max=8)
    ws = WsEndpoint(hub, None, None, commands, None, None, limits,  # type: ignore[arg-type]
                    RequestLimits(limits), WriteFacts(rooms, NoChoices(), None))  # type: ignore[arg-type]
    return ws, session, transport


async def test_a_reply_that_arrives_before_publish_returns_is_delivered():
    ws, session, transport = endpoint()
    await ws._on_frame(session, '{"op":"read","rid":"r1","conv":"c1","seq":1}')
    await asyncio.sleep(0)  # frames leave at the end of the loop's pass
    assert transport.frames() == [{"op": "ok", "rid": "r1", "seq": 1}]
    assert session.inflight == {}


def refused(code: str, cause: str) -> float:
    return REGISTRY.get_sample_value("parley_requests_refused_total", {"code": code, "cause": cause}) or 0.0


async def test_a_write_the_log_refuses_is_answered_once_and_not_left_in_flight():
    ws, session, transport = endpoint(fail=True)
    before = refused("unavailable", "TimeoutError")
    await ws._on_frame(session, '{"op":"read","rid":"r2","conv":"c1","seq":1}')
    assert refused("unavailable", "TimeoutError") == before + 1  # counted with what was behind it
    await asyncio.sleep(0)
    (reply,) = transport.frames()
    assert (reply["op"], reply["rid"], reply["code"], reply["retry_after_ms"]) == ("error", "r2", "unavailable", 100)
    assert session.inflight == {}


async def test_a_request_chat_core_never_answers_is_answered_unavailable_and_counted():
    ws, session, transport = endpoint()
    session.inflight["r3"] = 0.0  # its deadline has passed
    before = refused("unavailable", "no answer")
    ws._hub.sweep(1.0)
    await asyncio.sleep(0)
    (reply,) = transport.frames()
    assert (reply["rid"], reply["code"]) == ("r3", "unavailable") and session.inflight == {}
    assert refused("unavailable", "no answer") == before + 1


async def test_a_room_password_never_enters_the_command_log():
    published: list[Command] = []
    ws, session, transport = endpoint(log=published)
    await ws._on_frame(session, '{"op":"conv.join","rid":"j1","conv":"room","password":"open sesame"}')
    await ws._on_frame(session, '{"op":"conv.join","rid":"j2","conv":"room","password":"open barley"}')
    await ws._on_frame(session, '{"op":"conv.create","rid":"c1","kind":"group","visibility":"public",'
                                '"password":"new secret"}')
    await ws._on_frame(session, '{"op":"conv.update","rid":"u1","conv":"room","password":"newer secret"}')
    right, wrong, create, update = published
    assert right.edge == EdgeFacts(password_hash="hash(open sesame)") and right.body.password is None
    assert wrong.edge is None and wrong.body.password is None  # the writer refuses it: no hash matched
    assert create.edge == EdgeFacts(password_hash="hash(new secret)") and create.body.password is None
    assert update.edge == EdgeFacts(password_hash="hash(newer secret)") and update.body.password is F.UNSET
    assert not any(word in encode(c.body) for c in published for word in (b"secret", b"sesame", b"barley"))


def test_every_request_but_hello_and_ping_has_a_rate_limit_family():
    from typing import get_args

    from gateway.request_limits import UNLIMITED
    from parley.limits import RATES

    limited = {t.__struct_config__.tag for t in get_args(F.AnyRequest) if t not in UNLIMITED}
    assert set(RATES) == limited
    assert all(Limits().rate(family) for family in set(RATES.values()))  # each family is a setting
