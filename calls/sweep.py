"""Which calls the calls role's sweep asks LiveKit about, for the webhooks LiveKit lost (a lost
`participant_left` or `room_finished` would keep a call live, and its members busy, for ever): as
plain state, no clock, no loop. A call is known from the outbox's events that say it is active
(an answer, a join or leave of the room, a call nobody is rung for) and, after the role's restart,
from Parley's rooms LiveKit lists; it is forgotten when it ends, or once a sweep found its room
gone (the writer ends it then, or it was over). The writer decides what the listing means
(calls/state.py, `RoomListed`)."""

from __future__ import annotations

from collections.abc import Iterable

from calls.tokens import call_of_room
from parley.events import AnyCallEvent, CallAccepted, CallEnded, CallJoined, CallLeft, CallRinging


class SweptCalls:
    def __init__(self) -> None:
        #: call id -> when it was first known active (ms since the epoch).
        self._since: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._since)

    def observe(self, event: AnyCallEvent, at: int) -> None:
        """An event of the outbox, read at `at` (a call's grace starts again after a restart)."""
        if isinstance(event, CallEnded):
            self._since.pop(event.call, None)
        elif isinstance(event, (CallAccepted, CallJoined, CallLeft)) or (
                isinstance(event, CallRinging) and not event.ringing):
            self._since.setdefault(event.call, at)

    def due(self, rooms: Iterable[str], now: int, grace: int) -> list[str]:
        """The calls to sweep now: those known active for `grace` ms at least. `rooms` are the
        rooms LiveKit has: a Parley room's call not known yet is known from `now` on."""
        for room in rooms:
            call = call_of_room(room)
            if call is not None:
                self._since.setdefault(call, now)
        return sorted(call for call, since in self._since.items() if since <= now - grace)

    def forget(self, call: str) -> None:
        self._since.pop(call, None)
