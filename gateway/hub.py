"""This gateway's switchboard: the sessions it holds (by id and by user) and the router of
everything that arrives for them on the bus: chat_core's replies (to a session, or to a REST
request's waiting future), deliveries and conversation broadcasts (written to each member's
sessions), and revocations (the sessions they end). It also sweeps sessions that went silent,
expired or stopped reading."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Iterable, Sequence
from typing import TYPE_CHECKING

from gateway.admission import GOING_AWAY_REASON
from gateway.interest import ConvFollower
from gateway.session import Session, wire_frame
from parley import hops, metrics, tracing
from parley.closecodes import CloseCode
from parley.errors import Unauthorized, Unavailable
from parley.frames import error_frame
from parley.health import count_refused
from parley.limits import CLOSE_GRACE_S, Limits
from parley.ports import Broadcast, Deliver, GatewayMessage, Reply, Revoke
from parley.records import Revocation
from parley.session_families import revocation_ends

#: The close reason of a session whose token expired without an `auth` with a fresh one.
TOKEN_EXPIRED = "token expired: send auth with a fresh token, or reconnect"

if TYPE_CHECKING:  # gateway.calls runs commands through this hub
    from gateway.calls import CallJoins


#: The session id of commands the gateway's REST API publishes (admin actions, account deletion);
#: their replies come back through the bus like any session's and are handed to a waiting future.
REST_SESSION = "rest"


class Hub:
    def __init__(self, gateway_id: str, limits: Limits) -> None:
        self.gateway_id = gateway_id
        self._limits = limits
        self.sessions: dict[str, Session] = {}
        self._by_user: dict[str, list[Session]] = {}
        #: rid -> (monotonic deadline, future) of each REST-published command awaiting its reply.
        self._rest_inflight: dict[str, tuple[float, asyncio.Future[bytes]]] = {}
        #: The conversation subjects this gateway follows; None: large conversations are off.
        self.follower: ConvFollower | None = None
        metrics.CONNECTIONS.set_function(lambda: len(self.sessions))
        #: Turns call.start and call.join answers into LiveKit joins; None: no LiveKit, no calls.
        self.call_joins: CallJoins | None = None

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

    def users(self) -> Collection[str]:
        return self._by_user.keys()

    def session_count(self, user: str) -> int:
        return len(self._by_user.get(user, ()))

    def push_to(self, users: Iterable[str], frame: bytes) -> None:
        """Write `frame` to every session of `users` here."""
        by_user = self._by_user
        wire = wire_frame(frame)  # built once, written as-is to every recipient
        written = 0
        for user in users:
            for session in by_user.get(user, ()):
                session.push(frame, wire)
                written += 1
        metrics.DELIVERIES.inc(written)

    # ---- bus ------------------------------------------------------------------------------

    def on_message(self, msg: GatewayMessage) -> None:
        if isinstance(msg, Deliver):
            hops.stamp(msg.t_ns, hops.Stage.GATEWAY_PUSH, trace=msg.trace)
            with tracing.active(tracing.follow("gateway.push", msg.trace, tracing.SpanKind.CONSUMER)):
                self.push_to(msg.users, msg.frame)
            if msg.membership is not None and self.follower is not None:
                self.follower.changed(msg.membership)
        elif isinstance(msg, Broadcast):
            hops.stamp(msg.t_ns, hops.Stage.GATEWAY_PUSH, trace=msg.trace)
            if self.follower is not None:
                with tracing.active(tracing.follow("gateway.push", msg.trace, tracing.SpanKind.CONSUMER)):
                    self.follower.broadcast(msg.conv, msg.frame)
        elif isinstance(msg, Revoke):
            self.revoke(msg.revocation)
        elif isinstance(msg, Reply):
            if msg.session == REST_SESSION:
                waiting = self._rest_inflight.pop(msg.rid, None)
                if waiting is not None and not waiting[1].done():
                    waiting[1].set_result(msg.frame)
                return
            frame = msg.frame if self.call_joins is None else self.call_joins.answer(msg.session, msg.rid, msg.frame)
            asker = self.sessions.get(msg.session)
            if asker is not None and msg.rid in asker.inflight:
                asker.push(frame)
                asker.answered(msg.rid)

    def expect_reply(self, rid: str) -> asyncio.Future[bytes]:
        """Register a REST-published command as in flight (before publishing it, as sessions do:
        the reply may beat publish()'s return); the sweep answers it `unavailable` when late."""
        if rid in self._rest_inflight:
            raise ValueError(f"rid {rid} is already in flight")
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._rest_inflight[rid] = (time.monotonic() + self._limits.command_timeout_s, future)
        return future

    def forget_reply(self, rid: str) -> None:
        self._rest_inflight.pop(rid, None)

    def revoke(self, revocation: Revocation) -> int:
        """Close (4003) the sessions here that `revocation` ends; how many. From the bus or the
        revocation log, maybe both, maybe more than once: a closing session is not counted."""
        ended = 0
        for session in self._by_user.get(revocation.user_id, ()):
            claims = session.claims
            if claims is not None and not session.closing and revocation_ends(revocation, claims):
                session.close_after_flush(CloseCode.BAD_TOKEN, revocation.reason.encode()[:120])
                ended += 1
        return ended

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

    def sweep(self, now: float, wall: float | None = None) -> None:
        """One pass instead of a timer per session: idle sessions close 4002, sessions whose
        token expired (`wall`: unix seconds, default now) are told `unauthorized` and close 4003,
        sessions stuck in their close are cut, and requests that chat_core did not answer in time
        are answered `unavailable` (the client may resend)."""
        idle_after = 2 * self._limits.heartbeat_s
        wall = time.time() if wall is None else wall
        for session in list(self.sessions.values()):
            if session.cut_if_stuck(now, CLOSE_GRACE_S):
                continue
            if now - session.last_seen > idle_after:
                session.close_after_flush(CloseCode.IDLE, b"idle: ping at least every heartbeat_s")
            elif session.claims is not None and session.claims.expires_at <= wall and not session.closing:
                session.push(error_frame(Unauthorized(TOKEN_EXPIRED)))
                session.close_after_flush(CloseCode.BAD_TOKEN, b"token expired")
            if session.inflight:
                late = [rid for rid, deadline in session.inflight.items() if deadline < now]
                for rid in late:
                    late_answer = Unavailable("no answer in time; retry", retry_after_ms=1000)
                    count_refused(late_answer, cause="no answer")
                    session.push(error_frame(late_answer, rid))
                    session.answered(rid)
                    if self.call_joins is not None:
                        self.call_joins.forget(session.id, rid)
        late_rest = [rid for rid, (deadline, _) in self._rest_inflight.items() if deadline < now]
        for rid in late_rest:
            _, future = self._rest_inflight.pop(rid)
            if not future.done():
                future.set_result(error_frame(Unavailable("no answer in time; retry", retry_after_ms=1000), rid))

    def going_away(self) -> None:
        for session in list(self.sessions.values()):
            session.close_after_flush(CloseCode.GOING_AWAY, GOING_AWAY_REASON)
