"""chat_core survives a bug in one batch: that batch is answered `internal`, the next one works."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec

from chat_core.core import ChatCore
from chat_core.decide import Batch
from chat_core.relay import OutboxRelay
from chat_core.worker import CommandWorker
from parley import frames as F
from parley.adapters.inprocess import InProcessLog, LocalBus
from parley.adapters.sqlite.store import SqliteStore
from parley.ports import GatewayMessage, Reply
from parley.records import Command, EventRecord, Facts


class BuggyOnce(ChatCore):
    """A ChatCore whose first decision hits a bug (not a ParleyError)."""

    def __init__(self) -> None:
        super().__init__()
        self.bugs = 1

    def handle(self, cmd: Command, facts: Facts, now_ms: int, batch: Batch) -> bytes:
        if self.bugs:
            self.bugs -= 1
            raise RuntimeError("a bug")
        return super().handle(cmd, facts, now_ms, batch)


async def test_a_bug_costs_one_batch_not_the_writer(tmp_path: Path):
    store = SqliteStore(tmp_path / "parley.db", synchronous="NORMAL")
    await store.open()
    replies: asyncio.Queue[dict] = asyncio.Queue()

    def on_message(msg: GatewayMessage) -> None:
        assert isinstance(msg, Reply)
        replies.put_nowait(msgspec.json.decode(msg.frame))

    bus = LocalBus()
    bus.attach("gw", on_message)
    commands: InProcessLog[Command] = InProcessLog(100)
    worker = CommandWorker(BuggyOnce(), commands, store, bus,
                           OutboxRelay(store, InProcessLog[EventRecord](100)))
    task = asyncio.create_task(worker.run())
    try:
        for rid in ("first", "second"):
            await commands.publish(Command("c1", "alice", "gw", "s1",
                                           F.ConvCreate(rid=rid, kind="group", members=[])))
            reply = await asyncio.wait_for(replies.get(), 5)
            assert reply["rid"] == rid
            if rid == "first":
                assert (reply["op"], reply["code"]) == ("error", "internal")
            else:
                assert reply["op"] == "ok" and reply["conv"]["id"] == "c1"
        assert not task.done()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()
