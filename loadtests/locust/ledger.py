"""Send -> delivery accounting on one Locust worker: which of the worker's online members a
message was acked for, who has it, and which messages are overdue (acked, but some expected
member has not had it within the grace period: a failure). Also each message's spread, for a
channel's time to the last delivery. Values in, values out: no socket, no greenlet.

A delivery may come before its ack (the fan-out races the `ok` reply), so an entry starts at
whichever comes first. Members that come online after the ack are not expected (they may still
deliver; sync brings them the message and it counts as a delivery).
"""

from __future__ import annotations

from dataclasses import dataclass, field

Key = tuple[str, int]  # (conv, seq)


@dataclass
class _Entry:
    #: When the grace starts: the ack, or the first delivery of a message not acked (yet) here.
    since_s: float
    expected: frozenset[str] | None = None  # None until acked on this worker
    got: set[str] = field(default_factory=set)
    first_ms: float | None = None
    sent_ns: int = 0  # the send stamp the deliveries carry
    last_ms: float | None = None


@dataclass(frozen=True, slots=True)
class Overdue:
    conv: str
    seq: int
    missing: frozenset[str]


@dataclass(frozen=True, slots=True)
class Settled:
    overdue: list[Overdue]
    #: At the end only: acked within the grace and not yet complete (neither lost nor delivered).
    unsettled: int = 0


@dataclass(frozen=True, slots=True)
class Spread:
    """One message's deliveries seen on this worker: how many, first and last latency (ms)."""

    conv: str
    seq: int
    deliveries: int
    first_ms: float
    last_ms: float
    #: When it was sent, on the run's clock (latency.py).
    sent_ns: int


class DeliveryLedger:
    def __init__(self) -> None:
        self._entries: dict[Key, _Entry] = {}
        self._spreads: dict[Key, Spread] = {}

    def acked(self, conv: str, seq: int, expected: frozenset[str], now_s: float) -> None:
        """The sender's `ok`: `expected` are the members online on this worker right now."""
        entry = self._entries.setdefault((conv, seq), _Entry(now_s))
        entry.expected, entry.since_s = expected, now_s

    def delivered(self, conv: str, seq: int, user: str, latency_ms: float, now_s: float, *, sent_ns: int) -> bool:
        """A member got the message (sent at `sent_ns`); False if it had it already (live, then
        again in a sync)."""
        entry = self._entries.setdefault((conv, seq), _Entry(now_s))
        entry.sent_ns = sent_ns
        if user in entry.got:
            return False
        entry.got.add(user)
        entry.first_ms = latency_ms if entry.first_ms is None else min(entry.first_ms, latency_ms)
        entry.last_ms = latency_ms if entry.last_ms is None else max(entry.last_ms, latency_ms)
        return True

    def settle(self, now_s: float, grace_s: float, *, final: bool = False) -> Settled:
        """Retire complete messages (their spread is kept for `take_spreads`), and those acked
        more than `grace_s` ago that some expected member still lacks: those are overdue.
        Deliveries never acked here (another worker's sender) retire after the grace too.
        `final` (the test stops) retires everything; what is still within its grace is unsettled."""
        overdue: list[Overdue] = []
        unsettled = 0
        for key, entry in list(self._entries.items()):
            complete = entry.expected is not None and entry.expected <= entry.got
            in_grace = now_s - entry.since_s <= grace_s
            if not complete and in_grace and not final:
                continue
            del self._entries[key]
            if entry.got and entry.first_ms is not None and entry.last_ms is not None:
                self._spreads[key] = Spread(key[0], key[1], len(entry.got), entry.first_ms, entry.last_ms,
                                            entry.sent_ns)
            if entry.expected is not None and not complete:
                if in_grace:
                    unsettled += 1
                else:
                    overdue.append(Overdue(key[0], key[1], entry.expected - entry.got))
        return Settled(overdue, unsettled)

    def take_spreads(self) -> list[Spread]:
        """The spreads retired since the last call."""
        spreads, self._spreads = list(self._spreads.values()), {}
        return spreads

    def pending(self) -> int:
        return len(self._entries)
