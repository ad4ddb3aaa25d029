"""The consumer loops outlive the log going away: a poll or a commit that says `Unavailable`
(a frozen broker, a group the coordinator forgot) is waited out, and the next batch is served.
Measured before: the first such commit ended chat_core's and delivery's loops for good."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Generic, TypeVar

import msgspec

from chat_core.relay import OutboxRelay
from chat_core.core import ChatCore
from chat_core.worker import CommandWorker
from delivery.fanout import Fanout, MemberCache
from delivery.worker import DeliveryWorker
from parley import frames as F
from parley.adapters.inprocess import InProcessLog, LocalBus
from parley.adapters.sqlite.store import SqliteStore
from parley.errors import Unavailable
from parley.ports import GatewayMessage, Reply
from parley.records import Command, EventRecord
from tests.unit.test_delivery_batch import WHERE, Bus, Members, Presence

T = TypeVar("T")


class FlakyLog(InProcessLog[T], Generic[T]):
    """An in-process log whose first poll and first two commits fail as a frozen broker's do."""

    def __init__(self) -> None:
        super().__init__(100)
        self.failures = {"next_batch": 1, "commit": 2}

    def _fail(self, call: str) -> None:
        if self.failures[call]:
            self.failures[call] -= 1
            raise Unavailable("the log is unavailable; retry", retry_after_ms=5)

    async def next_batch(self, max_n: int) -> list[T]:
        self._fail("next_batch")
        return await super().next_batch(max_n)

    async def commit(self) -> None:
        self._fail("commit")


async def test_chat_core_answers_after_the_log_failed_its_poll_and_commits(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "parley.db", synchronous="NORMAL")
    await store.open()
    replies: asyncio.Queue[dict[str, object]] = asyncio.Queue()

    def on_message(msg: GatewayMessage) -> None:
        assert isinstance(msg, Reply)
        replies.put_nowait(msgspec.json.decode(msg.frame))

    bus = LocalBus()
    bus.attach("gw", on_message)
    commands: FlakyLog[Command] = FlakyLog()
    worker = CommandWorker(ChatCore(), commands, store, bus, OutboxRelay(store, InProcessLog[EventRecord](100)))
    task = asyncio.create_task(worker.run())
    try:
        for n in range(3):
            await commands.publish(Command(f"c{n}", "alice", "gw", "s1",
                                           F.ConvCreate(rid=f"r{n}", kind="group", members=[])))
            reply = await asyncio.wait_for(replies.get(), 5)
            assert (reply["rid"], reply["op"]) == (f"r{n}", "ok")
        assert commands.failures == {"next_batch": 0, "commit": 0}
        assert not task.done()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()


async def test_delivery_delivers_after_the_log_failed_its_poll_and_commits() -> None:
    bus = Bus()
    events: FlakyLog[EventRecord] = FlakyLog()
    fanout = Fanout(MemberCache(Members({"g": ["a", "b"]})), Presence(WHERE), bus)  # type: ignore[arg-type]
    task = asyncio.create_task(DeliveryWorker(events, fanout).run())
    try:
        for n in range(3):
            await events.publish(EventRecord("g", f"e{n}".encode()))
            for _ in range(500):
                if len(bus.to("gw1")) > n:
                    break
                await asyncio.sleep(0.01)
        assert bus.to("gw1") == [(f"e{n}".encode(), ["a"]) for n in range(3)]
        assert events.failures == {"next_batch": 0, "commit": 0}
        assert not task.done()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
