"""What a Locust user does with its session, by the role the plan gives its account: hold it
(heartbeats and catching up run in the background), or send to its conversation at the plan's
pace with the send time in each message (a group chatter, or a channel's poster)."""

from __future__ import annotations

import random
import time
from typing import Protocol

import gevent

from loadtests.locust.latency import now_ns, stamp_text
from loadtests.locust.plan import Conv
from loadtests.locust.worker import WorkerContext
from loadtests.locust.wsclient import ProtocolSession, Unexpected
from parley.errors import ParleyError

#: How long a holding user's task sleeps: it has nothing to do in the foreground.
HOLD_STEP_S = 5.0
#: The longest a sender waits for every user to start before it sends anyway (a worker that
#: never hears spawning complete); a ramp of 100,000 users at 150/s lasts 11 minutes.
WAIT_FOR_ALL_S = 3600.0


class Behaviour(Protocol):
    def step(self) -> None: ...


class Hold:
    def step(self) -> None:
        gevent.sleep(HOLD_STEP_S)


class Sender:
    """Sends every `conv.send_every_s`, from a random phase so senders do not move in step,
    once every user has started: chat runs while the sessions are held (a channel post is
    measured against every subscriber online), not on top of the ramp's connects. Closed loop
    per user, as Locust is: a send waits for its ack, and a sender that falls behind skips
    ahead rather than bursting."""

    def __init__(self, ctx: WorkerContext, session: ProtocolSession, conv: Conv) -> None:
        self._ctx = ctx
        self._session = session
        self._conv = conv
        self._due: float | None = None

    def step(self) -> None:
        every = self._conv.send_every_s
        if self._due is None:
            self._ctx.all_started.wait(WAIT_FOR_ALL_S)
            self._due = time.monotonic() + random.uniform(0, every)
        gevent.sleep(max(0.0, self._due - time.monotonic()))
        self._due = max(self._due + every, time.monotonic())
        self._send()

    def _send(self) -> None:
        clock = self._ctx.clock
        started = time.perf_counter()
        try:
            reply = self._session.send(self._conv.id, stamp_text(clock, now_ns(clock), self._session.user_id))
        except (ParleyError, Unexpected, gevent.Timeout) as exc:
            self._ctx.record("send->ack", (time.perf_counter() - started) * 1000, _as_exception(exc))
            return
        self._ctx.record("send->ack", (time.perf_counter() - started) * 1000, None)
        self._ctx.acked(self._conv, int(reply["seq"]))


def _as_exception(exc: BaseException) -> Exception:
    # gevent.Timeout is a BaseException; Locust records Exceptions.
    return exc if isinstance(exc, Exception) else TimeoutError(str(exc) or "no ack in time")
