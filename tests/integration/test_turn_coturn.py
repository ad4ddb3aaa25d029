"""TURN credentials from calls/ against a real coturn: what a join answer carries allocates a relay
through aioice's TURN client and relays a peer's datagrams; an expired or tampered credential is
refused with 401."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import cast

import pytest
from aioice import stun, turn

from calls import state as S
from calls.join import JoinMinter
from parley.frames import Media
from calls.tokens import Role
from calls.turn import turn_credentials
from parley.config import Settings
from tests.turn_server import TurnServer, turn_server  # noqa: F401

pytestmark = pytest.mark.integration


class Inbox(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.put_nowait((data, addr))


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(b"echo:" + data, addr)


@pytest.fixture
async def echo_peer() -> AsyncIterator[tuple[str, int]]:
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
    yield transport.get_extra_info("sockname")
    transport.close()


def join_credentials(server: TurnServer, now_s: int) -> tuple[str, str]:
    """The TURN username and password of a join answer, as a client gets them."""
    host, port = server.address
    settings = Settings(livekit_url="ws://127.0.0.1:7880", livekit_api_key="k", livekit_api_secret="s" * 32,
                        turn_urls=(f"turn:{host}:{port}?transport=udp",), turn_secret=server.secret, turn_ttl_s=600)
    minter = JoinMinter.from_settings(settings)
    assert minter is not None
    call = S.start(call_id="k1", conv="c1", media=Media.AUDIO, initiator="uann", device="d", callees=["ubob"],
                   direct=True, max_participants=2, ring_timeout_ms=45_000, now=0).call
    (ice,) = minter.join(call, user="uann", device="d", name="Ann", role=Role.SPEAKER, now_s=now_s).ice_servers
    assert ice.username is not None and ice.credential is not None
    return ice.username, ice.credential


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_join_credentials_allocate_a_relay_that_relays(turn_server: TurnServer, echo_peer: tuple[str, int],
                                                             transport: str) -> None:
    username, password = join_credentials(turn_server, int(time.time()))
    relay, inbox = await turn.create_turn_endpoint(Inbox, turn_server.address, username, password,
                                                   transport=transport)
    try:
        relayed_host, relayed_port = relay.get_extra_info("sockname")
        assert relayed_host == "127.0.0.1" and relayed_port != turn_server.address[1]
        relay.sendto(b"hello", echo_peer)
        data, sender = await asyncio.wait_for(inbox.received.get(), 5)
        assert (data, sender) == (b"echo:hello", echo_peer)
    finally:
        relay.close()


async def refused(server: TurnServer, username: str, password: str) -> int:
    with pytest.raises(stun.TransactionFailed) as failed:
        relay, _ = await turn.create_turn_endpoint(Inbox, server.address, username, password)
        relay.close()
    code, _reason = failed.value.response.attributes["ERROR-CODE"]
    return int(code)


async def test_an_expired_credential_is_refused(turn_server: TurnServer) -> None:
    username, password = join_credentials(turn_server, int(time.time()) - 601)  # expired a second ago
    assert await refused(turn_server, username, password) == 401


async def test_a_tampered_credential_is_refused(turn_server: TurnServer) -> None:
    now = int(time.time())
    username, password = join_credentials(turn_server, now)
    expiry, _, user = username.partition(":")
    assert await refused(turn_server, username, password[:-2] + ("AA" if password[-2:] != "AA" else "BB")) == 401
    # the same password with a later expiry or for another user
    assert await refused(turn_server, f"{int(expiry) + 3600}:{user}", password) == 401
    assert await refused(turn_server, f"{expiry}:ubob", password) == 401
    # and one signed with another secret
    other_user, other_password = turn_credentials("not-the-secret", "uann", now_s=now, ttl_s=600)
    assert await refused(turn_server, other_user, other_password) == 401
