"""The scale-out fan-out bus: `GatewayBus` over NATS core (nats-py), plus a gateway's inbox.

Delivery publishes msgpack-encoded `GatewayMessage`s on `parley.gw.<gateway_id>`, and each
event of a very large conversation once, as a `Broadcast` on `parley.conv.<conv_id>`; a gateway serves its
own subject and subscribes to a conversation's subject while it holds a member's session.
NATS core is at most once: what is published while nobody subscribes is gone, so catching
up after an outage is the store's job, not the bus's.

While the connection is down, nats-py keeps reconnecting (forever, `reconnect_wait_s` apart)
and buffers publishes in memory up to `pending_bytes`; they go out once it reconnects. A
publish that does not fit raises `Unavailable`, so the caller (delivery's consumer) backs off
and retries instead of the buffer growing without bound. Subscriptions are replayed by nats-py
on every reconnect.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import ConnectionClosedError, ConnectionDrainingError, ConnectionReconnectingError
from nats.errors import FlushTimeoutError, OutboundBufferLimitError

from parley import topics
from parley.errors import Unavailable
from parley.ports import Broadcast, GatewayMessage, Reply, Revoke

log = logging.getLogger(__name__)

Handler = Callable[[GatewayMessage], None]
FLUSH_TIMEOUT_S = 5


class NatsBus:
    """One NATS connection: publishes to gateways and conversations, and serves gateways.

    Create it with `await NatsBus.connect(url)`; `close()` drains subscriptions and buffered
    publishes, then closes."""

    def __init__(self, *, reconnect_wait_s: int) -> None:
        self._nc = Client()
        self._reconnect_wait_s = reconnect_wait_s
        self._closing = False
        self._encode = msgspec.msgpack.Encoder().encode

    @classmethod
    async def connect(cls, url: str, *, name: str = "parley", reconnect_wait_s: int = 1,
                      pending_bytes: int = 8 * 1024 * 1024, ping_interval_s: int = 10,
                      connect_timeout_s: float = 10.0) -> NatsBus:
        """Raises Unavailable if the first connection is not up within `connect_timeout_s`
        (a wrong URL fails the process's start instead of hanging it); after that it
        reconnects forever."""
        bus = cls(reconnect_wait_s=reconnect_wait_s)
        try:
            await asyncio.wait_for(bus._nc.connect(
                url, name=name,
                max_reconnect_attempts=-1,            # forever: the server always comes back
                reconnect_time_wait=reconnect_wait_s,  # fixed wait between attempts, not growing
                pending_size=pending_bytes,  # default 8 MiB: a second or so of a busy worker's output
                # A server that vanished without closing the socket is noticed after two
                # unanswered pings, not after nats-py's default of 2 x 120 s.
                ping_interval=ping_interval_s, max_outstanding_pings=2,
                disconnected_cb=bus._disconnected, reconnected_cb=bus._reconnected,
                error_cb=bus._error, closed_cb=bus._closed,
            ), connect_timeout_s)
        except TimeoutError as err:
            bus._closing = True
            await bus._nc.close()
            raise Unavailable(f"nats: no server at {url}", retry_after_ms=bus._retry_after_ms) from err
        return bus

    @property
    def _retry_after_ms(self) -> int:
        return self._reconnect_wait_s * 1000

    # nats-py's connection callbacks (coroutines, as nats-py 2.x requires)

    async def _disconnected(self) -> None:
        if not self._closing:
            log.warning("nats: disconnected; reconnecting every %d s", self._reconnect_wait_s)

    async def _reconnected(self) -> None:
        url = self._nc.connected_url
        log.info("nats: reconnected to %s", url.netloc if url else "?")

    async def _error(self, err: Exception) -> None:
        # Failed reconnect attempts and slow-consumer drops land here, not in a caller.
        log.warning("nats: %r", err)

    async def _closed(self) -> None:
        # nats-py gives up even on a forever-reconnecting connection when the server answers
        # with a protocol error (e.g. authorization): `connected` then stays False for good.
        if not self._closing:
            log.error("nats: connection closed for good: %r", self._nc.last_error)

    @property
    def connected(self) -> bool:
        """False while reconnecting (publishes are then buffered): for readiness checks."""
        return bool(self._nc.is_connected)

    async def to_gateway(self, gateway_id: str, msg: GatewayMessage) -> None:
        await self._publish(topics.gateway_subject(gateway_id), self._encode(msg),
                            None if isinstance(msg, (Reply, Revoke)) else msg.trace)

    async def publish_conv(self, conv: str, msg: Broadcast) -> None:
        """Once for every gateway subscribed to the conversation (see `GatewayInbox.join_conv`)."""
        await self._publish(topics.conv_subject(conv), self._encode(msg), msg.trace)

    async def _publish(self, subject: str, payload: bytes, traceparent: str | None) -> None:
        # The trace context also as the W3C header (no instrumentation exists for nats-py), for
        # tools watching the subjects; the gateway reads it from the message itself.
        headers = {"traceparent": traceparent} if traceparent is not None else None
        try:
            await self._nc.publish(subject, payload, headers=headers)
        except OutboundBufferLimitError as err:
            raise Unavailable("the bus is reconnecting and its buffer is full; retry",
                              retry_after_ms=self._retry_after_ms) from err
        except (ConnectionClosedError, ConnectionDrainingError) as err:
            raise Unavailable("the bus is closing", retry_after_ms=self._retry_after_ms) from err

    async def serve_gateway(self, gateway_id: str, handler: Handler) -> GatewayInbox:
        """Calls `handler` with every message for `gateway_id`, and with the `Broadcast`s of the
        conversations the returned inbox joins."""
        inbox = GatewayInbox(self._nc, handler)
        await inbox.start(topics.gateway_subject(gateway_id))
        return inbox

    async def close(self) -> None:
        """Delivers what is buffered and lets the handlers finish what has arrived, then closes."""
        self._closing = True
        try:
            await self._nc.drain()
        except ConnectionReconnectingError:
            await self._nc.close()  # no server to drain to: buffered publishes are dropped
        except ConnectionClosedError:
            pass


class GatewayInbox:
    """One gateway's subscriptions: its own subject, and each conversation subject while the
    gateway holds at least one member's session (a reference count per conversation)."""

    def __init__(self, nc: Client, handler: Handler) -> None:
        self._nc = nc
        self._handler = handler
        self._refs: dict[str, int] = {}
        self._convs: dict[str, Subscription] = {}
        # join/leave await the subscribe; serialized so a leave cannot miss a subscription
        # that a concurrent join is still creating.
        self._lock = asyncio.Lock()
        self._on_gateway = self._callback(msgspec.msgpack.Decoder(GatewayMessage).decode)
        self._on_conv = self._callback(msgspec.msgpack.Decoder(Broadcast).decode)

    async def start(self, subject: str) -> None:
        await self._nc.subscribe(subject, cb=self._on_gateway)
        await self._registered()

    async def _registered(self) -> None:
        """Returns once the server has the subscriptions made so far (a PING round trip), so a
        gateway that subscribes and then reads what it missed from the store leaves no gap.
        While reconnecting there is nothing to wait for: nats-py replays them on reconnect."""
        if not self._nc.is_connected:
            return
        try:
            # Twice: nats-py 2.16 writes a flush's PING straight to the socket, ahead of a SUB
            # still in its buffer, so the first PONG can precede the SUB (measured: 1-3% of
            # subscriptions missed a publish that followed). By the first PONG the buffer has
            # been written, so the second PING follows the SUB.
            await self._nc.flush(timeout=FLUSH_TIMEOUT_S)
            await self._nc.flush(timeout=FLUSH_TIMEOUT_S)
        except FlushTimeoutError:  # the subscription stands; the ping timer handles a dead link
            log.warning("nats: server did not confirm a subscription within %d s", FLUSH_TIMEOUT_S)

    def _callback(self, decode: Callable[[bytes], GatewayMessage]) -> Callable[[Msg], Awaitable[None]]:
        handler = self._handler

        async def on_msg(msg: Msg) -> None:  # nats-py 2.x only takes coroutine callbacks
            try:
                decoded = decode(msg.data)
            except (msgspec.DecodeError, msgspec.ValidationError) as err:
                log.warning("nats: dropped an undecodable message on %s: %s", msg.subject, err)
                return
            try:
                handler(decoded)
            except Exception:  # one bad message must not stop the gateway's stream
                log.exception("nats: handler failed on a message from %s", msg.subject)

        return on_msg

    async def join_conv(self, conv: str) -> None:
        """A session of a member of `conv` arrived; subscribes on the first."""
        async with self._lock:
            self._refs[conv] = self._refs.get(conv, 0) + 1
            if conv in self._convs:
                return
            self._convs[conv] = await self._nc.subscribe(topics.conv_subject(conv), cb=self._on_conv)
        await self._registered()  # outside the lock: other joins need not wait for this round trip

    async def leave_conv(self, conv: str) -> None:
        """That session left; unsubscribes after the last."""
        async with self._lock:
            refs = self._refs.get(conv, 0) - 1
            if refs > 0:
                self._refs[conv] = refs
                return
            self._refs.pop(conv, None)
            sub = self._convs.pop(conv, None)
            if sub is not None:
                await sub.unsubscribe()
