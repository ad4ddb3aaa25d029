"""The Locust session's recovery, without a server: one sync at a time however many gaps arrive
(a sync per event melted a 10,000-subscriber run), and a first connect that fails is retried
with backoff as an app would, each attempt recorded."""

from __future__ import annotations

import gevent
import pytest
import websocket
from gevent.event import Event

from loadtests.locust import wsclient
from loadtests.locust.wsclient import ProtocolSession


def _session(records: list[tuple[str, bool]]) -> ProtocolSession:
    return ProtocolSession("http://127.0.0.1:9", "token", on_message=lambda _: None,
                           record=lambda name, _ms, exc: records.append((name, exc is None)))


def test_gaps_seen_while_a_sync_runs_ask_for_one_more_sync_not_one_each():
    session = _session([])
    release, calls = Event(), []

    def slow_sync() -> bool:
        calls.append(1)
        release.wait()
        return True
    session._sync = slow_sync  # type: ignore[method-assign]
    for _ in range(5):
        session._want_sync()
        gevent.sleep(0)
    assert len(calls) == 1  # the four gaps while it ran are one wish
    release.set()
    gevent.sleep(0.01)
    assert len(calls) == 2  # the one more
    gevent.sleep(0.01)
    assert len(calls) == 2 and not session._syncing
    session._want_sync()
    gevent.sleep(0.01)
    assert len(calls) == 3  # a later gap syncs again


def test_a_failed_sync_is_not_retried_at_once():
    session = _session([])
    calls = []

    def failing_sync() -> bool:
        calls.append(1)
        session._want_sync()  # a gap during it
        return False
    session._sync = failing_sync  # type: ignore[method-assign]
    session._want_sync()
    gevent.sleep(0.01)
    assert calls == [1] and not session._syncing


def test_a_first_connect_that_fails_is_retried_and_each_attempt_recorded(monkeypatch: pytest.MonkeyPatch):
    records: list[tuple[str, bool]] = []
    session = _session(records)
    attempts = iter([OSError("refused"), websocket.WebSocketTimeoutException("slow"), None])

    def open_() -> websocket.WebSocket:
        failure = next(attempts)
        if failure is not None:
            raise failure
        return websocket.WebSocket()
    monkeypatch.setattr(wsclient, "BACKOFF_START_S", 0.001)
    monkeypatch.setattr(session, "_open", open_)
    monkeypatch.setattr(session, "_read_loop", lambda: None)
    monkeypatch.setattr(session, "_beat", lambda: None)
    monkeypatch.setattr(session, "_sync", lambda: True)
    session.start()
    assert records == [("connect", False), ("connect", False), ("connect", True)]
