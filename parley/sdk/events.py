"""What the SDK receives (frames are decoded in `parley.sdk.wire`): the buffer of events
(and other unasked-for frames) that a user of the SDK reads with `next_event`, `events()`,
`drain_events` and `recv_raw`.

Events arrive as plain dicts (what the wire carries, unknown fields included); `typed` turns one
into its Struct of parley/events.py, the server's own definition of the outbound half.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import msgspec

from parley import events as E
from parley.sdk.wire import Frame

EventHook = Callable[[Frame], None]


EventT = TypeVar("EventT", bound=E.Event)


#: msgspec decodes a union given as a value; mypy cannot take a Union as a `type[T]`.
_ANY_EVENT: Any = E.AnyEvent


def typed(event: Frame) -> E.Event:
    """An event frame as the Struct its `type` names; raises msgspec.ValidationError if it is none."""
    result: E.Event = msgspec.convert(event, _ANY_EVENT)
    return result


def is_event(frame: Frame) -> bool:
    return frame.get("op") == "event"


def event_conv(event: Frame) -> str | None:
    """The conversation an event is about, wherever its type keeps the id."""
    conv = event.get("conv")
    if isinstance(conv, dict):  # conv.updated carries the whole object
        conv = conv.get("id")
    if conv is None:
        message = event.get("message")
        if isinstance(message, dict):
            conv = message.get("conv")
    return conv if isinstance(conv, str) else None


class Inbox:
    """Frames nobody asked for (events, rid-less errors, late replies) in arrival order, and
    whoever waits for them. Once closed, a waiter gets what is left, then nothing."""

    def __init__(self) -> None:
        self._frames: deque[Frame] = deque()
        # Replaced on every arrival so any number of waiters wake without a Condition lock.
        self._arrival = asyncio.Event()
        self._closed = False

    def put(self, frame: Frame) -> None:
        self._frames.append(frame)
        self._wake()

    def close(self) -> None:
        self._closed = True
        self._wake()

    async def next_event(self, type: str | None, timeout: float, conv: str | None) -> Frame:
        """The oldest buffered (or next arriving) event of that type/conv; others stay buffered.
        Raises TimeoutError if none comes in time, at once when closed."""

        def match(frame: Frame) -> bool:
            return (
                is_event(frame)
                and (type is None or frame.get("type") == type)
                and (conv is None or event_conv(frame) == conv)
            )

        found = await self._take(match, timeout)
        if found is None:
            raise TimeoutError(f"no {type or 'event'} event: the client is closed")
        return found

    async def next_frame(self, timeout: float) -> Frame:
        """The oldest buffered (or next arriving) frame of any kind."""
        found = await self._take(lambda _: True, timeout)
        if found is None:
            raise TimeoutError("no frame: the client is closed")
        return found

    def events(self) -> AsyncIterator[Frame]:
        """Every event in arrival order, until closed."""
        return _EventStream(self)

    def drain_events(self) -> list[Frame]:
        """Take every buffered event without waiting (other frames stay)."""
        events = [f for f in self._frames if is_event(f)]
        if events:
            self._frames = deque(f for f in self._frames if not is_event(f))
        return events

    async def _take(self, match: Callable[[Frame], bool], timeout: float | None) -> Frame | None:
        """Remove and return the first buffered frame matching; None once closed and none left."""
        async with asyncio.timeout(timeout):
            while True:
                arrival = self._arrival  # taken before the scan, so no arrival is missed
                for i, frame in enumerate(self._frames):
                    if match(frame):
                        del self._frames[i]
                        return frame
                if self._closed:
                    return None
                await arrival.wait()

    def _wake(self) -> None:
        arrival, self._arrival = self._arrival, asyncio.Event()
        arrival.set()


class _EventStream:
    """`Inbox.events()`: an async iterator that ends when the inbox closes."""

    def __init__(self, inbox: Inbox) -> None:
        self._inbox = inbox

    def __aiter__(self) -> _EventStream:
        return self

    async def __anext__(self) -> Frame:
        frame = await self._inbox._take(is_event, None)
        if frame is None:
            raise StopAsyncIteration
        return frame
