"""How a revocation reaches the live sessions it ends, on every gateway, within seconds.

Twice: announced on the bus to the gateways that presence says hold the user (at once), and read
back from the store's revocation log by every gateway every `revocation_poll_s` (what a process
without a bus revoked, `parley admin` writing the store; what the bus or presence lost). The log
and not a re-check of every session's account and family: a gateway of 100k sessions would read
200k rows per pass to find the few that changed, while one read of the last seconds of the log
costs the same at any number of sessions, and the hub finds a revoked user's sessions by user id.
Entries are read more than once (each read reaches back past the last one, for clocks that
disagree); ending a session twice is nothing, so nothing tracks what was applied.
"""

from __future__ import annotations

import asyncio
import logging

from gateway.hub import Hub
from parley.accounts import now_ms
from parley.errors import ParleyError
from parley.limits import REVOCATION_LOG_KEEP_S
from parley.ports import GatewayBus, Presence, Revoke, SessionStore
from parley.records import Revocation
from parley.session_families import Announce

log = logging.getLogger(__name__)

#: How far each read of the log reaches back past the previous one: entries are stamped by the
#: clock of the process that wrote them, which may run this far behind the gateway's.
CLOCK_SKEW_MS = 30_000


def bus_announcer(bus: GatewayBus, presence: Presence) -> Announce:
    """Announces a revocation to each gateway holding a session of its user."""

    async def announce(revocation: Revocation) -> None:
        for gateway in await presence.locate([revocation.user_id]):
            await bus.to_gateway(gateway, Revoke(revocation))

    return announce


class RevocationFollower:
    """This gateway's reader of the revocation log."""

    def __init__(self, log_store: SessionStore, hub: Hub, every_s: float) -> None:
        self._log = log_store
        self._hub = hub
        self._every_s = every_s
        #: Where the next read starts (ms): back to before the last read that succeeded.
        self._since = now_ms() - CLOCK_SKEW_MS

    async def poll(self) -> None:
        started = now_ms()
        since = max(self._since, started - REVOCATION_LOG_KEEP_S * 1000)
        for revocation in await self._log.revocations_since(since):
            self._hub.revoke(revocation)
        self._since = started - CLOCK_SKEW_MS

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._every_s)
            try:
                await self.poll()
            except ParleyError as err:  # the store is away: the next read reaches back further
                log.warning("revocation log not read: %s", err.message)
