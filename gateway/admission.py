"""Who may open a WebSocket session on this gateway, before it says hello.

WebSockets that have not said hello yet are counted per client address, and a cap refuses more
before the upgrade: one address cannot hold a gateway's sockets and memory with handshakes it
never finishes (the hello timeout frees each, but only after seconds). Once the gateway drains
nobody new is let in, and the handshakes still waiting for hello are ended at once (4009).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

#: The reason of every 4009 close: sessions told at a drain, and handshakes it ended.
GOING_AWAY_REASON = b"server going away: reconnect"


class Admission:
    __slots__ = ("_per_ip_max", "_by_ip", "_waits", "draining")

    def __init__(self, per_ip_max: int) -> None:
        #: WebSockets before hello one client address may hold at once; 0: no cap.
        self._per_ip_max = per_ip_max
        #: client address -> its WebSockets not past hello (an address at 0 is dropped).
        self._by_ip: dict[str, int] = {}
        #: The deadlines of the hello waits in progress: a drain moves them to now.
        self._waits: set[asyncio.Timeout] = set()
        #: Set once by `drain`: from then on every upgrade is refused.
        self.draining = False

    def admit(self, ip: str) -> bool:
        """Count a new WebSocket of `ip` until `release(ip)`; False (and not counted) when `ip`
        holds the cap already."""
        held = self._by_ip.get(ip, 0)
        if self._per_ip_max and held >= self._per_ip_max:
            return False
        self._by_ip[ip] = held + 1
        return True

    def release(self, ip: str) -> None:
        """The WebSocket `admit` counted said hello, or is gone."""
        held = self._by_ip[ip] - 1
        if held:
            self._by_ip[ip] = held
        else:
            del self._by_ip[ip]

    @property
    def pending(self) -> bool:
        """Whether any WebSocket is still before hello (a drain waits for them to be told)."""
        return bool(self._by_ip)

    @contextmanager
    def hello_wait(self, deadline: asyncio.Timeout) -> Iterator[None]:
        """While the caller waits for hello under `deadline`, a drain expires it at once."""
        if self.draining:
            deadline.reschedule(asyncio.get_running_loop().time())
        self._waits.add(deadline)
        try:
            yield
        finally:
            self._waits.discard(deadline)

    def drain(self) -> None:
        """Refuse every upgrade from now on, and end the hello waits in progress: their
        WebSockets are told 4009 (the close a client reconnects elsewhere after)."""
        self.draining = True
        now = asyncio.get_running_loop().time()
        for deadline in self._waits:
            deadline.reschedule(now)
