"""The sessions one gateway holds, by id and by user, and what arrives for them on the bus."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence

from gateway.session import Session, wire_frame
from parley.closecodes import CloseCode
from parley.errors import Unavailable
from parley.frames import error_frame
from parley.limits import Limits
from parley.ports import Deliver, GatewayMessage, Reply


class Hub:
    def __init__(self, gateway_id: str, limits: Limits) -> None:
        self.gateway_id = gateway_id
        self._limits = limits
        self.sessions: dict[str, Session] = {}
        self._by_user: dict[str, list[Session]] = {}

    def add(self, session: Session) -> bool:
        """True if this is the user's first session here."""
        self.sessions[session.id] = session
        same_user = self._by_user.setdefault(session.user, [])
        same_user.append(session)
        return len(same_user) == 1

    def remove(self, session: Session) -> bool:
        """True if that was the user's last session here."""
        self.sessions.pop(session.id, None)
        same_user = self._by_user.get(session.user)
        if same_user is None or session not in same_user:
            return False
        same_user.remove(session)
        if not same_user:
            del self._by_user[session.user]
            return True
        return False

    def users(self) -> Iterable[str]:
        return self._by_user.keys()

    # ---- bus ------------------------------------------------------------------------------

    def on_message(self, msg: GatewayMessage) -> None:
        if isinstance(msg, Deliver):
            frame, by_user = msg.frame, self._by_user
            wire = wire_frame(frame)  # built once, written as-is to every recipient
            for user in msg.users:
                for session in by_user.get(user, ()):
                    session.push(frame, wire)
        elif isinstance(msg, Reply):
            asker = self.sessions.get(msg.session)
            if asker is not None and msg.rid in asker.inflight:
                asker.push(msg.frame)
                asker.answered(msg.rid)

    # ---- presence (the embedded default: this process is the only gateway) ----------------

    async def locate(self, users: Sequence[str]) -> dict[str, list[str]]:
        by_user = self._by_user
        here = [u for u in users if u in by_user]
        return {self.gateway_id: here} if here else {}

    # ---- housekeeping ---------------------------------------------------------------------

    async def sweep_forever(self, every_s: float = 1.0) -> None:
        while True:
            await asyncio.sleep(every_s)
            self.sweep(time.monotonic())

    def sweep(self, now: float) -> None:
        """One pass instead of a timer per session: idle sessions close 4002, and requests that
        chat_core did not answer in time are answered `unavailable` (the client may resend)."""
        idle_after = 2 * self._limits.heartbeat_s
        for session in list(self.sessions.values()):
            if now - session.last_seen > idle_after:
                session.close_after_flush(CloseCode.IDLE, b"idle: ping at least every heartbeat_s")
            if session.inflight:
                late = [rid for rid, deadline in session.inflight.items() if deadline < now]
                for rid in late:
                    session.push(error_frame(Unavailable("no answer in time; retry", retry_after_ms=1000), rid))
                    session.answered(rid)

    def going_away(self) -> None:
        for session in list(self.sessions.values()):
            session.close_after_flush(CloseCode.GOING_AWAY, b"server going away: reconnect")
