"""A session's outgoing frames: those pushed during one pass of the event loop leave in one
write, in order; a socket that backs up gets the bounded queue instead, still in order."""

from __future__ import annotations

import asyncio
import time

import msgspec

from gateway.hub import Hub
from gateway.session import RESYNC, DIRECT_WRITE_MAX, Session, wire_frame
from parley.closecodes import CloseCode
from parley.limits import CLOSE_GRACE_S, Limits
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


# ---- bounded in bytes, and what a session holds once it is told to go -----------------------


class NeverReadingSocket(RecordingSocket):
    """A peer that stopped reading: a write waits for a drain that never comes."""

    async def send_frame(self, payload: bytes, opcode: object) -> None:
        self.sent.append(payload)
        await asyncio.get_running_loop().create_future()


def sized(n: int, size: int) -> bytes:
    return b'{"n":%d,"pad":"%s"}' % (n, b"x" * (size - 15 - len(str(n))))


async def test_the_queue_counts_bytes_and_gives_them_back_as_frames_leave():
    transport = RecordingTransport(buffered=DIRECT_WRITE_MAX)
    ws = RecordingSocket()
    s = Session("s1", "alice", None, ws, transport, 100, max_queue_bytes=10_000)  # type: ignore[arg-type]
    for n in range(3):
        s.push(sized(n, 1000))
    await asyncio.sleep(0)  # flushed into the queue; the writer starts
    assert s.queued_bytes == 3000
    await asyncio.sleep(0)  # the writer ran
    assert (s.queued_bytes, len(ws.sent)) == (0, 3)


async def test_a_queue_over_its_bytes_gets_resync_and_4008_before_its_frame_count():
    transport = RecordingTransport(buffered=DIRECT_WRITE_MAX)
    ws = NeverReadingSocket()
    s = Session("s1", "alice", None, ws, transport, 2048, max_queue_bytes=10_000)  # type: ignore[arg-type]
    for n in range(20):  # 20 KB for a reader that takes nothing
        s.push(sized(n, 1000))
    await asyncio.sleep(0)  # ten fit, the eleventh overflows: the queue is replaced by `resync`
    assert s.queued_bytes == len(RESYNC) and s.closing
    await asyncio.sleep(0)
    assert ws.sent == [RESYNC] and s.queued_bytes == 0


async def test_one_frame_larger_than_the_byte_bound_still_goes_when_the_queue_is_empty():
    transport = RecordingTransport(buffered=DIRECT_WRITE_MAX)
    ws = RecordingSocket()
    s = Session("s1", "alice", None, ws, transport, 100, max_queue_bytes=1000)  # type: ignore[arg-type]
    big = sized(1, 5000)  # a large sync reply must not make the session unusable
    s.push(big)
    for _ in range(2):
        await asyncio.sleep(0)
    assert ws.sent == [big] and ws.closed_with is None


async def test_a_session_whose_peer_never_takes_the_close_is_cut_and_its_buffers_dropped():
    transport = RecordingTransport(buffered=DIRECT_WRITE_MAX)
    ws = NeverReadingSocket()
    s = Session("s1", "alice", None, ws, transport, 2048, max_queue_bytes=10_000)  # type: ignore[arg-type]
    hub = Hub("gw", Limits())
    hub.add(s)
    for n in range(30):
        s.push(sized(n, 1000))
    for _ in range(3):
        await asyncio.sleep(0)
    assert s.closing and not transport.aborted
    hub.sweep(time.monotonic() + 1)  # still within its grace
    assert not transport.aborted
    hub.sweep(time.monotonic() + CLOSE_GRACE_S + 1)
    assert transport.aborted and s.queued_bytes == 0  # the reader sees the socket go and removes it
    await s.stop()
    assert s.queued_bytes == 0 and not s._queue and not s._pending
