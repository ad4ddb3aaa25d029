"""Delivered state and what conversation lists show: the writer's `received` decision, the
gateway's gathering of `received` requests, the receipts tally and message previews. Pure code
and fakes: no loop beyond the test's, no socket, no store."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import pytest

from chat_core.core import ChatCore
from gateway.reads import tally_receipts
from gateway.received import ReceivedAcks
from parley import frames as F
from parley.errors import RateLimited, Unavailable
from parley.frames import Message
from parley.limits import Limits
from parley.previews import preview
from parley.records import Command, MemberRow, PutOutbox, SetDeliveredSeq
from tests.unit.test_core import cmd, decide, group

_json = msgspec.json.Decoder()


def received(user: str, seq: int) -> Command:
    return cmd(user, F.Received(rid="received", conv="c1", seq=seq), session="")


def delivered_events(mutations: list) -> list[dict]:
    return [_json.decode(m.record.frame) for m in mutations if isinstance(m, PutOutbox)]


def test_a_delivered_cursor_moves_forward_only_and_reading_counts_as_receiving():
    core = ChatCore()
    core.convs["c1"] = group("a", "b", last_seq=5)
    core.convs["c1"].members["b"].read_seq = 2
    _, mutations = decide(core, received("b", 4), received("b", 3), received("b", 99))
    # 3 is behind, 99 is clamped to the last message: two moves, each one event.
    assert [m for m in mutations if isinstance(m, SetDeliveredSeq)] == [SetDeliveredSeq("c1", "b", 4),
                                                                        SetDeliveredSeq("c1", "b", 5)]
    assert [(e["type"], e["user"], e["seq"]) for e in delivered_events(mutations)] == [
        ("delivered", "b", 4), ("delivered", "b", 5)]
    _, mutations = decide(core, received("b", 2))  # read already: nothing to say
    assert mutations == []


@pytest.mark.parametrize(("kind", "members", "told"), [("group", 3, True), ("group", 4, False), ("channel", 2, False)])
def test_delivered_events_only_in_small_conversations_that_are_not_channels(kind, members, told):
    core = ChatCore(limits=Limits(receipts_max_members=3))
    core.convs["c1"] = group(*[f"u{i}" for i in range(members)], kind=kind, last_seq=1)
    _, mutations = decide(core, received("u1", 1))
    assert [m for m in mutations if isinstance(m, SetDeliveredSeq)] == [SetDeliveredSeq("c1", "u1", 1)]
    assert bool(delivered_events(mutations)) is told


def test_a_non_member_acknowledgement_changes_nothing():
    core = ChatCore()
    core.convs["c1"] = group("a", "b", last_seq=1)
    replies, mutations = decide(core, received("eve", 1))
    assert replies[0]["op"] == "error" and mutations == []


class Recording:
    def __init__(self, fail: bool = False) -> None:
        self.batches: list[list[Command]] = []
        self.fail = fail

    async def publish(self, item: Command) -> None:
        await self.publish_many([item])

    async def publish_many(self, items: Sequence[Command]) -> None:
        if self.fail:
            raise Unavailable("log away")
        self.batches.append(list(items))


async def test_received_requests_are_gathered_into_one_command_per_conversation_and_user():
    log = Recording()
    acks = ReceivedAcks(log, "gw1")
    for seq in (1, 3, 2):
        acks.note("a", "c1", seq)
    acks.note("b", "c1", 1)
    acks.note("a", "c2", 7)
    await acks.flush()
    assert [(c.conv, c.user, c.gateway, c.session, c.body.seq) for c in log.batches[0]] == [  # type: ignore[union-attr]
        ("c1", "a", "gw1", "", 3), ("c1", "b", "gw1", "", 1), ("c2", "a", "gw1", "", 7)]
    await acks.flush()  # nothing new: nothing sent
    assert len(log.batches) == 1


async def test_gathered_receipts_are_bounded_and_a_failed_flush_is_dropped_not_kept():
    acks = ReceivedAcks(Recording(fail=True), "gw1", pending_max=2)
    acks.note("a", "c1", 1)
    acks.note("a", "c2", 1)
    acks.note("a", "c1", 5)  # a pair already held still moves
    with pytest.raises(RateLimited):
        acks.note("a", "c3", 1)
    await acks.flush()
    acks.note("a", "c3", 1)  # room again


def member(user: str, read: int, delivered: int) -> MemberRow:
    return MemberRow(conv="c1", user=user, role="member", visible_from=1, read_seq=read, joined_at=0,
                     delivered_seq=delivered)


def test_receipts_name_members_in_small_conversations_and_only_count_them_otherwise():
    members = [member("b", 5, 5), member("c", 0, 5), member("d", 5, 0), member("e", 0, 4)]
    named = tally_receipts("r1", "c1", 5, members, named=True)
    assert (named.members, named.delivered, named.read) == (4, ["b", "c", "d"], ["b", "d"])
    counted = tally_receipts("r1", "c1", 5, members, named=False)
    assert (counted.delivered_count, counted.read_count, counted.delivered, counted.read) == (3, 2, None, None)


def msg(text: str | None, attachments: int = 0, deleted: bool = False) -> Message:
    return Message(conv="c1", seq=1, sender="a", ts=1, cmid="m", text=text,
                   attachments=[f"a{i}" for i in range(attachments)], deleted=deleted)


def test_a_preview_is_one_bounded_line_or_says_what_the_message_holds():
    assert preview(msg("hello\n\n  world")) == "hello world"
    long = preview(msg("word " * 100), max_chars=20)
    assert long is not None and len(long) <= 20 and long.endswith("…")
    assert preview(msg("", attachments=1)) == "1 attachment"
    assert preview(msg("  ", attachments=3)) == "3 attachments"
    assert preview(msg(None, deleted=True)) is None
