"""The calls role's ring timers, as plain state (no clock, no loop): which calls ring and until
when. They are armed by `call.ringing` events and, when the role starts, from the store (every
call that rings, whatever happened to the role meanwhile); the events that stop callees ringing
settle them. A due timer is fired as a `call.ring_timeout` command, then again a few times, a
little later each (a writer whose clock is behind says it is too early; a command may be lost),
until an event says the call stopped ringing. The writer ignores what comes early or twice.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass

from parley.events import AnyCallEvent, CallAccepted, CallDeclined, CallEnded, CallRinging

#: After a timer first fires, it fires again after each of these (ms), then gives up.
REFIRE_MS = (1_000, 2_000, 4_000, 8_000, 16_000)


@dataclass(slots=True)
class _Timer:
    conv: str
    at: int
    #: The callees still ringing; None when not known (armed from the store).
    ringing: set[str] | None
    fired: int = 0


class RingTimers:
    def __init__(self) -> None:
        self._timers: dict[str, _Timer] = {}
        #: (at, call id): entries whose timer is gone or moved are skipped when they come up.
        self._heap: list[tuple[int, str]] = []

    def __len__(self) -> int:
        return len(self._timers)

    def arm(self, call: str, conv: str, deadline: int, ringing: Iterable[str] | None = None) -> None:
        self._timers[call] = _Timer(conv, deadline, None if ringing is None else set(ringing))
        heapq.heappush(self._heap, (deadline, call))

    def observe(self, event: AnyCallEvent) -> None:
        """Follow one call event of the outbox's stream."""
        if isinstance(event, CallRinging):
            if event.ringing:
                self.arm(event.call, event.conv, event.ring_deadline, event.ringing)
            else:  # the ring timeout passed while a group call goes on
                self._timers.pop(event.call, None)
        elif isinstance(event, (CallAccepted, CallDeclined)):
            timer = self._timers.get(event.call)
            if timer is not None and timer.ringing is not None:
                timer.ringing.discard(event.user)
                if not timer.ringing:
                    del self._timers[event.call]
        elif isinstance(event, CallEnded):
            self._timers.pop(event.call, None)

    def next_at(self) -> int | None:
        """When the next timer is due (ms since the epoch); None when none is armed."""
        while self._heap:
            at, call = self._heap[0]
            timer = self._timers.get(call)
            if timer is not None and timer.at == at:
                return at
            heapq.heappop(self._heap)
        return None

    def due(self, now: int) -> list[tuple[str, str]]:
        """(call, conv) of the timers due at `now`, each set to fire again later (or dropped)."""
        fired = []
        while (at := self.next_at()) is not None and at <= now:
            _, call = heapq.heappop(self._heap)
            timer = self._timers[call]
            fired.append((call, timer.conv))
            if timer.fired < len(REFIRE_MS):
                timer.at = now + REFIRE_MS[timer.fired]
                timer.fired += 1
                heapq.heappush(self._heap, (timer.at, call))
            else:
                del self._timers[call]
        return fired
