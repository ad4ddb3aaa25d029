"""Restart safety, rate limits and bounded per-session queues, against real processes."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request

import aiohttp
import pytest

from parley.errors import ParleyError, Unavailable
from parley.sdk import Client, register
from tests.conftest import ROOT, ParleyProcess

pytestmark = pytest.mark.integration
UNLIMITED = {"PARLEY_SEND_BURST": "1000000"}


async def sender(srv: ParleyProcess, token: str, conv: str, tag: str, acked: dict[str, int],
                 in_flight: set[str], stop: asyncio.Event, window: int = 8) -> None:
    """Sends until the connection breaks, `window` at a time; records every acknowledged cmid."""
    client = await Client.connect(srv.base_url, token)
    n = 0

    async def one(cmid: str) -> None:
        in_flight.add(cmid)
        ack = await client.send(conv, cmid, cmid=cmid)
        acked[cmid] = ack["seq"]
        in_flight.discard(cmid)

    try:
        while not stop.is_set():
            batch = [f"{tag}-{n + i}" for i in range(window)]
            n += window
            await asyncio.gather(*(one(c) for c in batch))
    except (ParleyError, ConnectionError, TimeoutError):
        pass
    finally:
        await client.close()


async def all_messages(srv: ParleyProcess, token: str, conv: str) -> list[dict]:
    client = await Client.connect(srv.base_url, token)
    out: list[dict] = []
    after = 0
    while page := (await client.request("history", conv=conv, after=after, limit=200))["messages"]:
        out.extend(page)
        after = page[-1]["seq"]
    await client.close()
    return out


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
async def test_every_acknowledged_message_survives_a_restart_with_dense_seqs(fresh_server, sig):
    srv = fresh_server(**UNLIMITED)
    users = [await register(srv.base_url, f"writer{i}", "correct horse") for i in range(3)]
    owner = await Client.connect(srv.base_url, users[0].token)
    conv = (await owner.request("conv.create", kind="group", members=[u.user_id for u in users[1:]]))["conv"]["id"]
    await owner.close()

    acked: dict[str, int] = {}
    in_flight: set[str] = set()
    stop = asyncio.Event()
    tasks = [asyncio.create_task(sender(srv, u.token, conv, f"w{i}", acked, in_flight, stop))
             for i, u in enumerate(users)]
    while len(acked) < 300:
        await asyncio.sleep(0.05)
    srv.stop(sig)  # mid-stream: sends are in flight at this moment
    stop.set()
    await asyncio.gather(*tasks)
    assert len(acked) >= 300

    srv.start()
    # Clients resend what was in flight, with the same cmid: stored at most once.
    retried = {}
    by_tag = {f"w{i}": u for i, u in enumerate(users)}
    for cmid in sorted(in_flight):
        client = await Client.connect(srv.base_url, by_tag[cmid.split("-")[0]].token)
        retried[cmid] = (await client.send(conv, cmid, cmid=cmid))["seq"]
        await client.close()

    messages = await all_messages(srv, users[0].token, conv)
    seqs = [m["seq"] for m in messages]
    assert seqs == list(range(1, len(messages) + 1)), "seqs must stay dense"
    by_cmid = {m["cmid"]: m["seq"] for m in messages}
    assert len(by_cmid) == len(messages), "no message is stored twice"
    for cmid, seq in acked.items():
        assert by_cmid.get(cmid) == seq, f"acknowledged {cmid} (seq {seq}) was lost or moved"
    for cmid, seq in retried.items():
        assert by_cmid[cmid] == seq

    client = await Client.connect(srv.base_url, users[1].token)
    assert (await client.send(conv, "after the restart"))["seq"] == len(messages) + 1
    await client.close()


@pytest.mark.slow
async def test_sigterm_tells_clients_4009_and_exits_cleanly(fresh_server):
    srv = fresh_server()
    user = await register(srv.base_url, "leaver", "correct horse")
    client = await Client.connect(srv.base_url, user.token)
    assert srv.proc is not None
    srv.proc.send_signal(signal.SIGTERM)
    assert await client.wait_closed(timeout=10) == 4009
    assert srv.stop(timeout=15) == 0
    await client.close()


@pytest.mark.slow
async def test_a_websocket_still_before_hello_at_sigterm_is_told_4009_and_new_ones_go_elsewhere(fresh_server):
    srv = fresh_server()
    user = await register(srv.base_url, "latecomer", "correct horse")
    live = await Client.connect(srv.base_url, user.token)
    async with aiohttp.ClientSession() as http:
        waiting = await http.ws_connect(srv.base_url.replace("http", "ws") + "/v1/ws")  # no hello yet
        assert srv.proc is not None
        srv.proc.send_signal(signal.SIGTERM)
        msg = await waiting.receive(timeout=10)
        assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 4009)
    assert await live.wait_closed(timeout=10) == 4009
    # The listener closed before the drain began: a client trying now is sent elsewhere.
    with pytest.raises(Unavailable):
        await Client.connect(srv.base_url, user.token)
    assert srv.stop(timeout=15) == 0
    await live.close()


async def test_sends_over_the_rate_limit_get_rate_limited_with_retry_after(fresh_server):
    srv = fresh_server(PARLEY_SEND_BURST="5", PARLEY_SEND_WINDOW_S="1")
    user = await register(srv.base_url, "chatty", "correct horse")
    client = await Client.connect(srv.base_url, user.token)
    conv = (await client.request("conv.create", kind="group", members=[]))["conv"]["id"]
    for i in range(5):
        await client.send(conv, f"m{i}")
    with pytest.raises(ParleyError) as err:
        await client.send(conv, "one too many")
    assert err.value.code == "rate_limited"
    assert err.value.retry_after_ms is not None and 0 < err.value.retry_after_ms <= 1000
    await asyncio.sleep(err.value.retry_after_ms / 1000 + 0.05)
    assert (await client.send(conv, "later"))["seq"] == 6
    await client.close()


def _ws_handshake(port: int, rcvbuf: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert b" 101 " in head.split(b"\r\n")[0]
    return sock


def _ws_send_text(sock: socket.socket, text: str) -> None:
    payload, mask = text.encode(), os.urandom(4)
    header = bytes([0x81]) + (bytes([0x80 | len(payload)]) if len(payload) < 126
                              else bytes([0x80 | 126]) + struct.pack("!H", len(payload)))
    sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


def _ws_frames(sock: socket.socket, deadline: float) -> list[tuple[int, bytes]]:
    """Read server frames (unmasked) until the close frame or the deadline."""
    buf, frames = b"", []
    sock.settimeout(1.0)
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(1 << 20)
        except socket.timeout:
            continue
        if not chunk:
            break
        buf += chunk
        while len(buf) >= 2:
            opcode, n, at = buf[0] & 0x0F, buf[1] & 0x7F, 2
            if n == 126:
                n, at = struct.unpack("!H", buf[2:4])[0], 4
            elif n == 127:
                n, at = struct.unpack("!Q", buf[2:10])[0], 10
            if len(buf) < at + n:
                break
            frames.append((opcode, buf[at:at + n]))
            buf = buf[at + n:]
            if opcode == 0x8:
                return frames
    return frames


@pytest.mark.slow
async def test_a_reader_too_slow_gets_resync_and_close_4008_and_others_are_unaffected(fresh_server):
    # The bound counts frames not yet handed to the socket; a 50-send burst puts ~100 frames in
    # one loop tick, so the bound must sit above the bursts a healthy reader sees.
    srv = fresh_server(PARLEY_SEND_QUEUE_MAX="256", **UNLIMITED)
    slow_user = await register(srv.base_url, "slowpoke", "correct horse")
    fast_user = await register(srv.base_url, "speedy", "correct horse")
    fast = await Client.connect(srv.base_url, fast_user.token)
    conv = (await fast.request("conv.create", kind="group", members=[slow_user.user_id]))["conv"]["id"]

    sock = await asyncio.to_thread(_ws_handshake, srv.port, 4096)
    _ws_send_text(sock, json.dumps({"op": "hello", "rid": "h", "token": slow_user.token}))
    # The slow reader now reads nothing while the others talk: ~8 MB of events for it.
    text = "x" * 16000
    for burst in range(10):
        await asyncio.gather(*(fast.send(conv, text) for _ in range(50)))
        for _ in range(50):
            await fast.next_event("message.new", conv=conv, timeout=10)  # the fast reader keeps up
    frames = await asyncio.to_thread(_ws_frames, sock, time.monotonic() + 20)
    sock.close()
    texts = [json.loads(p) for op, p in frames if op == 0x1]
    assert {"op": "event", "type": "resync"} in texts
    assert frames[-1][0] == 0x8 and struct.unpack("!H", frames[-1][1][:2])[0] == 4008
    seen = [t["message"]["seq"] for t in texts if t.get("type") == "message.new"]
    assert len(seen) < 500  # it was cut off, not buffered without bound
    assert (await fast.ping())["op"] == "ok"
    await fast.close()


def test_version_and_capabilities_tell_what_runs(server):
    out = subprocess.run([sys.executable, "-m", "parley", "--version"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert out.startswith("parley 0.1.0 (commit ") and "built" in out
    with urllib.request.urlopen(server.base_url + "/v1/client/capabilities") as resp:
        caps = json.load(resp)
    assert caps["limits"]["max_frame_bytes"] == 65536 and caps["limits"]["history_max"] == 200
    assert caps["features"]["typing"] is True and caps["features"]["attachments"] is True
    for path in ("/healthz", "/readyz"):
        with urllib.request.urlopen(server.base_url + path) as resp:
            assert resp.status == 200
