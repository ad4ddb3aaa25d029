"""Rows the store contract writes: a conversation with its members, messages and outbox records."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from parley.frames import Message
from parley.ports import Store
from parley.records import ConvRow, CreateConv, EventRecord, MemberRow, PutMember


def conv_row(conv: str = "c1", last_seq: int = 0) -> ConvRow:
    return ConvRow(id=conv, kind="group", title="t", visibility="private", password_hash=None, history="joined",
                   owner="a", created_at=1, last_seq=last_seq)



def member(user: str, conv: str = "c1", role: str = "member") -> MemberRow:
    return MemberRow(conv=conv, user=user, role=role, visible_from=1, read_seq=0, joined_at=1)



def message(seq: int, sender: str = "a", cmid: str | None = None, conv: str = "c1") -> Message:
    return Message(conv=conv, seq=seq, sender=sender, ts=seq * 10, cmid=cmid or f"m{seq}", text=f"text {seq}",
                   mentions=["b"] if seq == 1 else [])



def record(n: int) -> EventRecord:
    return EventRecord("c1", b'{"n":%d}' % n)



async def seeded(open_: Callable[[], Awaitable[Store]]) -> Store:
    store = await open_()
    await store.apply([CreateConv(conv_row()), PutMember(member("a", role="owner")), PutMember(member("b"))])
    return store
