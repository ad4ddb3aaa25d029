"""A session's outgoing frames: those pushed during one pass of the event loop leave in one
write, in order; a socket that backs up gets the bounded queue instead, still in order."""

from __future__ import annotations

import asyncio

import msgspec

from gateway.session import RESYNC, DIRECT_WRITE_MAX, Session, wire_frame
from parley.closecodes import CloseCode
from tests.recording_transport import RecordingTransport, split_frames


class RecordingSocket:
    """The aiohttp WebSocketResponse a queued session writes through."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed_with: tuple[int, bytes] | None = None

    async def send_frame(self, payload: bytes, opcode: object) -> None:
        self.sent.append(payload)

    async def close(self, *, code: int, message: bytes) -> None:
        self.closed_with = (code, message)


def session(transport: RecordingTransport, max_queue: int = 100) -> tuple[Session, RecordingSocket]:
    ws = RecordingSocket()
    return Session("s1", "alice", None, ws, transport, max_queue), ws  # type: ignore[arg-type]


def frame(n: int) -> bytes:
    return msgspec.json.encode({"n": n})


async def test_frames_pushed_in_one_pass_leave_in_one_write_in_order():
    transport = RecordingTransport()
    s, _ = session(transport)
    s.push(frame(1))
    shared = frame(2)
    s.push(shared, wire_frame(shared))
    s.push(frame(3))
    assert transport.writes == []  # not before the pass ends
    await asyncio.sleep(0)
    assert len(transport.writes) == 1
    assert [msgspec.json.decode(p) for p in split_frames(transport.writes[0])] == [{"n": 1}, {"n": 2}, {"n": 3}]
    s.push(frame(4))
    await asyncio.sleep(0)
    assert len(transport.writes) == 2 and transport.frames()[-1] == {"n": 4}


async def test_a_backed_up_socket_gets_the_queue_in_order():
    transport = RecordingTransport(buffered=DIRECT_WRITE_MAX)
    s, ws = session(transport)
    for n in range(3):
        s.push(frame(n))
    await asyncio.sleep(0)  # flushed into the queue, the writer started
    await asyncio.sleep(0)  # the writer ran
    assert transport.writes == []
    assert ws.sent == [frame(0), frame(1), frame(2)]


async def test_overflowing_the_queue_sends_resync_and_closes_4008():
    transport = RecordingTransport(buffered=DIRECT_WRITE_MAX)
    s, ws = session(transport, max_queue=2)
    for n in range(5):
        s.push(frame(n))
    for _ in range(3):
        await asyncio.sleep(0)
    assert ws.sent == [RESYNC]
    assert ws.closed_with is not None and ws.closed_with[0] == CloseCode.POLICY
    s.push(frame(9))  # after close: dropped
    await asyncio.sleep(0)
    assert ws.sent == [RESYNC] and transport.writes == []


async def test_close_after_flush_writes_what_is_pending_first():
    transport = RecordingTransport()
    s, ws = session(transport)
    s.push(frame(1))
    s.close_after_flush(CloseCode.GOING_AWAY, b"bye")
    assert transport.frames() == [{"n": 1}]  # written before the close is even scheduled
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert ws.closed_with == (CloseCode.GOING_AWAY, b"bye")
    assert transport.frames() == [{"n": 1}]  # once


async def test_a_pass_writes_directly_only_what_fits_under_the_bound_and_queues_the_rest():
    transport = RecordingTransport(buffered=DIRECT_WRITE_MAX - 150)
    s, ws = session(transport)
    payloads = [b'{"n":%d,"pad":"%s"}' % (n, b"x" * 40) for n in range(4)]  # 60 bytes, 62 on the wire
    for p in payloads:
        s.push(p)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert split_frames(b"".join(transport.writes)) == payloads[:2]
    assert ws.sent == payloads[2:]


async def test_an_overflow_while_closing_keeps_the_policy_close():
    transport = RecordingTransport(buffered=DIRECT_WRITE_MAX)
    s, ws = session(transport, max_queue=2)
    for n in range(3):
        s.push(frame(n))
    s.close_after_flush(CloseCode.GOING_AWAY, b"bye")  # its flush overflows the queue first
    for _ in range(3):
        await asyncio.sleep(0)
    assert ws.sent == [RESYNC] and ws.closed_with is not None and ws.closed_with[0] == CloseCode.POLICY


async def test_a_discarded_session_writes_nothing_more():
    transport = RecordingTransport()
    s, ws = session(transport)
    s.push(frame(1))
    s.discard()  # the socket is being closed by someone else
    s.push(frame(2))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert transport.writes == [] and ws.sent == [] and ws.closed_with is None
