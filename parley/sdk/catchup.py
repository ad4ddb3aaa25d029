"""What a session holds of each conversation, so that it resumes where it was: the watermark
`last_seq` (everything up to it is held, so a `sync` asks from there) and the messages already
delivered (so a message that arrives twice, live and again in a sync, is delivered once).
Values in, values out: no socket, no loop.
"""

from __future__ import annotations

from typing import Any

from parley.sdk.wire import Frame


class _SeenSeqs:
    """The (conv, seq) pairs already delivered; a contiguous run collapses into a floor so
    a long-lived client does not keep one entry per message."""

    def __init__(self) -> None:
        self._floor: dict[str, int] = {}
        self._above: dict[str, set[int]] = {}

    def add(self, conv: str, seq: int) -> bool:
        """Record the pair; False if it was already there."""
        floor = self._floor.get(conv, 0)
        above = self._above.setdefault(conv, set())
        if seq <= floor or seq in above:
            return False
        above.add(seq)
        while floor + 1 in above:
            floor += 1
            above.remove(floor)
        self._floor[conv] = floor
        return True


class Catchup:
    """`last_seq` and the delivered messages of one session, across all its sockets."""

    def __init__(self) -> None:
        #: conv -> the seq up to which this session holds every message.
        self.last_seq: dict[str, int] = {}
        self._seen = _SeenSeqs()

    def admit(self, frame: Frame) -> bool:
        """Whether to deliver `frame`: False for a message.new already delivered. A message
        right above the watermark moves it."""
        if frame.get("op") != "event" or frame.get("type") != "message.new":
            return True
        message = frame.get("message")
        if not isinstance(message, dict):
            return True
        conv, seq = message.get("conv"), message.get("seq")
        if not (isinstance(conv, str) and isinstance(seq, int)):
            return True
        if not self._seen.add(conv, seq):
            return False
        if seq == self.last_seq.get(conv, 0) + 1:  # contiguous: the watermark moves
            self.last_seq[conv] = seq
        return True

    def note_sync(self, reply: Frame) -> None:
        """Raise the watermarks a `sync` reply proves. Only a sync can: a send's ok or a
        history page says nothing about the messages below them."""
        for entry in _list(reply.get("convs")):
            conv, last = entry.get("conv"), entry.get("last_seq")
            messages = _list(entry.get("messages"))
            if not isinstance(conv, str):
                continue
            if not entry.get("more") and isinstance(last, int):
                # Uncut, the reply covers all up to last_seq (even what joined-history hides).
                self._bump(conv, last)
            elif messages:
                self._bump_message(messages[-1])

    def _bump_message(self, message: Any) -> None:
        if isinstance(message, dict):
            conv, seq = message.get("conv"), message.get("seq")
            if isinstance(conv, str) and isinstance(seq, int):
                self._bump(conv, seq)

    def _bump(self, conv: str, seq: int) -> None:
        if seq > self.last_seq.get(conv, 0):
            self.last_seq[conv] = seq


def sync_replay(reply: Frame) -> tuple[list[Frame], bool]:
    """A recovery sync's messages as message.new events, and whether a page was cut (then
    another sync, from the raised watermark, continues where it stopped)."""
    events: list[Frame] = []
    cut = False
    for entry in _list(reply.get("convs")):
        messages = _list(entry.get("messages"))
        events.extend({"op": "event", "type": "message.new", "message": message} for message in messages)
        cut = cut or (bool(entry.get("more")) and bool(messages))
    return events, cut


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
