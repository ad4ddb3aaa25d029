"""The send timestamp a load-test message carries in its text, so that any receiver measures
send -> delivery without asking the sender.

Two clocks: `mono` is CLOCK_MONOTONIC, one clock for every process of one machine (Linux), immune
to time steps: right when the senders and receivers run on one machine (`make loadtest`). `wall`
is the system time, for Locust workers on several machines: their clocks must be synchronised
(chrony/NTP; `chronyc tracking` shows the offset, typically well under 1 ms on one LAN, which is
then the error of every latency measured).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

Clock = Literal["mono", "wall"]
CLOCKS: tuple[Clock, ...] = ("mono", "wall")
_MARK = "lt"


def now_ns(clock: Clock) -> int:
    return time.monotonic_ns() if clock == "mono" else time.time_ns()


@dataclass(frozen=True, slots=True)
class Stamp:
    clock: Clock
    sent_ns: int


def stamp_text(clock: Clock, sent_ns: int, note: str = "") -> str:
    """The message text: the mark, the clock, the send time (ns), then anything."""
    return f"{_MARK} {clock} {sent_ns} {note}".rstrip()


def read_stamp(text: object) -> Stamp | None:
    """The stamp of a load-test message's text; None for any other text."""
    if not isinstance(text, str):
        return None
    parts = text.split(" ", 3)
    if len(parts) < 3 or parts[0] != _MARK or parts[1] not in CLOCKS or not parts[2].isdigit():
        return None
    clock: Clock = "mono" if parts[1] == "mono" else "wall"
    return Stamp(clock, int(parts[2]))


def elapsed_ms(stamp: Stamp) -> float:
    """Milliseconds from the stamp to now, on the stamp's clock."""
    return (now_ns(stamp.clock) - stamp.sent_ns) / 1e6
