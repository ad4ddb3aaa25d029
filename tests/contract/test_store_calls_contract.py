"""The store contract, calls: the call state chat_core writes with its conversations (the live call,
calls by id, call settings, who takes part in a live call), the ring timers the calls role reads,
and call records in the history. Every adapter must pass these unchanged (conftest.py)."""

from __future__ import annotations

from msgspec.structs import replace

from parley.frames import CallRecord, CallState, EndReason, Media, Message, call_record_cmid
from parley.ports import RingingCall
from parley.records import (
    Call, CallSettings, CreateConv, DropCallMember, InsertMessage, Needs, PutCall, PutCallMember, PutCallSettings,
    PutMember, RoomSession, SetConvHead,
)
from tests.contract.samples import conv_row, member, message, seeded

T0 = 1_800_000_000_000


def ringing(call_id: str = "c1-k1", conv: str = "c1", deadline: int = T0 + 45_000) -> Call:
    return Call(id=call_id, conv=conv, media=Media.VIDEO, initiator="a", direct=False, max_participants=8,
                state=CallState.RINGING, started_at=T0, ring_deadline=deadline, invited=frozenset({"b"}),
                ringing=frozenset({"b"}))


def answered(call: Call) -> Call:
    return replace(call, state=CallState.ACTIVE, ringing=frozenset(), accepted=frozenset({"b"}), answered_at=T0 + 5,
                   present=frozenset({RoomSession("b", "phone", "PA_1")}), in_room=frozenset({"b"}))


def ended(call: Call) -> Call:
    return replace(call, state=CallState.ENDED, ringing=frozenset(), present=frozenset(), in_room=frozenset(),
                   ended_at=T0 + 65, end_reason=EndReason.HANGUP)


async def test_a_live_call_comes_with_its_conversation_and_every_call_by_id(reopen):
    store = await seeded(reopen)
    call = ringing()
    await store.apply([PutCall(call)])
    store = await reopen()  # durable
    facts = await store.prefetch(Needs(convs={"c1"}, calls={"c1-k1", "c1-nope"}))
    assert facts.convs["c1"].call == call and facts.calls == {"c1-k1": call}
    await store.apply([PutCall(answered(call))])
    assert (await store.prefetch(Needs(convs={"c1"}))).convs["c1"].call == answered(call)
    await store.apply([PutCall(ended(answered(call)))])
    facts = await store.prefetch(Needs(convs={"c1"}, calls={"c1-k1"}))
    assert facts.convs["c1"].call is None  # ended: no longer the conversation's live call
    assert facts.calls["c1-k1"] == ended(answered(call))


async def test_a_call_ended_and_the_next_one_started_in_one_batch_leave_the_new_one_live(reopen):
    store = await seeded(reopen)
    first = ringing()
    await store.apply([PutCall(first)])
    second = ringing("c1-k2")
    await store.apply([PutCall(ended(first)), PutCall(second)])
    assert (await store.prefetch(Needs(convs={"c1"}))).convs["c1"].call == second


async def test_call_settings_are_the_defaults_until_set(reopen):
    store = await seeded(reopen)
    assert (await store.prefetch(Needs(convs={"c1"}))).convs["c1"].call_settings == CallSettings()
    settings = CallSettings(enabled=False, max_participants=4, max_video_subscriptions=None)
    await store.apply([PutCallSettings("c1", settings)])
    store = await reopen()
    assert (await store.prefetch(Needs(convs={"c1"}))).convs["c1"].call_settings == settings


async def test_the_live_calls_of_a_conversations_members_are_found_in_any_conversation(reopen):
    store = await seeded(reopen)  # c1: a and b
    await store.apply([CreateConv(conv_row("c2")), PutMember(member("b", conv="c2")), PutMember(member("x", conv="c2")),
                       PutCallMember("b", "c2-k1", "c2"), PutCallMember("x", "c2-k1", "c2"),
                       PutCallMember("b", "c9-k3", "c9")])
    facts = await store.prefetch(Needs(call_members={"c1"}))
    assert facts.in_calls == {"b": {"c2-k1", "c9-k3"}}  # x is in a call, but not a member of c1
    await store.apply([DropCallMember("b", "c2-k1"), DropCallMember("b", "c9-k3")])
    assert (await store.prefetch(Needs(call_members={"c1", "c2"}))).in_calls == {"x": {"c2-k1"}}


async def test_a_users_live_calls_are_listed_until_it_leaves_them(reopen):
    store = await seeded(reopen)
    await store.apply([PutCallMember("b", "c9-k3", "c9"), PutCallMember("b", "c2-k1", "c2"),
                       PutCallMember("x", "c2-k1", "c2")])
    store = await reopen()
    assert await store.live_calls_of("b") == ["c2-k1", "c9-k3"] and await store.live_calls_of("a") == []
    await store.apply([DropCallMember("b", "c2-k1")])
    assert await store.live_calls_of("b") == ["c9-k3"]


async def test_ringing_calls_are_listed_by_deadline_until_they_stop_ringing(reopen):
    store = await seeded(reopen)
    early, late = ringing("c1-k1", deadline=T0 + 10_000), ringing("c2-k1", conv="c2", deadline=T0 + 7_200_000)
    await store.apply([PutCall(late), PutCall(early), PutCall(ended(ringing("c3-k1", conv="c3")))])
    store = await reopen()
    assert await store.ringing_calls(T0, T0 + 86_400_000) == [RingingCall("c1", "c1-k1", T0 + 10_000),
                                                              RingingCall("c2", "c2-k1", T0 + 7_200_000)]
    assert await store.ringing_calls(T0 + 10_001, T0 + 7_200_000) == []  # [since, until)
    await store.apply([PutCall(answered(early))])
    assert [r.call for r in await store.ringing_calls(T0, T0 + 86_400_000)] == ["c2-k1"]


async def test_a_call_record_is_a_message_of_kind_call_and_a_cmid_alone_makes_none(reopen):
    store = await seeded(reopen)
    record = CallRecord(call="c1-k1", media=Media.AUDIO, initiator="a", participants=("a", "b"),
                        reason=EndReason.HANGUP, started_at=T0, ended_at=T0 + 65, duration=60, missed=False)
    on_call = Message(conv="c1", seq=2, sender="a", ts=T0 + 65, cmid=call_record_cmid("c1-k1"), text="Audio call",
                      kind="call", call=record)
    lookalike = message(3, sender="b", cmid=call_record_cmid("c1-k9"))
    await store.apply([InsertMessage(message(1)), InsertMessage(on_call), InsertMessage(lookalike),
                       SetConvHead("c1", 3)])
    store = await reopen()
    (page,) = await store.message_pages([("c1", 1, 100, 10, False)])
    assert [(m.kind, m.call) for m in page] == [("text", None), ("call", record), ("text", None)]
    facts = await store.prefetch(Needs(messages={("c1", 2)}))
    assert facts.messages[("c1", 2)] == on_call


async def test_a_call_is_read_by_id_as_last_stored_live_or_ended(reopen):
    store = await seeded(reopen)
    call = ringing()
    await store.apply([PutCall(call), PutCall(ringing("c2-k1", conv="c2"))])
    store = await reopen()
    assert await store.call("c1-k1") == call and await store.call("c1-nope") is None
    await store.apply([PutCall(ended(answered(call)))])
    assert await store.call("c1-k1") == ended(answered(call))
