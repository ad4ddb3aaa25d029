"""DriverSession's bridge from cassandra-driver's ResponseFuture callbacks (called on the
driver's own thread) to asyncio, and its error mapping, with a stub in place of a cluster."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from cassandra import ConsistencyLevel, WriteTimeout
from cassandra.protocol import SyntaxException

from parley.adapters.cassandra.session import DriverSession
from parley.errors import Unavailable


class StubFuture:
    def __init__(self, outcome: Any, paging_state: bytes | None) -> None:
        self.outcome, self._paging_state = outcome, paging_state

    def add_callbacks(self, callback: Any, errback: Any) -> None:
        fire = errback if isinstance(self.outcome, BaseException) else callback
        threading.Timer(0.01, fire, [self.outcome]).start()  # another thread, later


class StubSession:
    def __init__(self, outcome: Any, paging_state: bytes | None = None) -> None:
        self.outcome, self.paging_state = outcome, paging_state
        self.sent: list[Any] = []

    def execute_async(self, query: Any, paging_state: bytes | None = None) -> StubFuture:
        self.sent.append((query, paging_state))
        return StubFuture(self.outcome, self.paging_state)


class StubPrepared:
    def bind(self, params: list[Any]) -> Any:
        return type("Bound", (), {"params": params, "fetch_size": None})()


async def test_rows_and_the_paging_state_arrive_on_the_loop():
    stub = StubSession([(1, "a"), (2, "b")], paging_state=b"next")
    s = DriverSession(None, stub, {"q": StubPrepared()})
    page = await s.execute("q", ["x"], fetch_size=2, paging_state=b"prev")
    assert page.rows == [(1, "a"), (2, "b")] and page.paging_state == b"next"
    bound, state = stub.sent[0]
    assert bound.params == ["x"] and bound.fetch_size == 2 and state == b"prev"


async def test_timeouts_become_unavailable_and_bugs_stay_bugs():
    timeout = WriteTimeout("timed out", consistency=ConsistencyLevel.LOCAL_SERIAL, required_responses=2,
                           received_responses=1, write_type=5)
    with pytest.raises(Unavailable):
        await DriverSession(None, StubSession(timeout), {"q": StubPrepared()}).execute("q", [])
    with pytest.raises(SyntaxException):
        await DriverSession(None, StubSession(SyntaxException(0, "bad", None)), {"q": StubPrepared()}).execute("q", [])
