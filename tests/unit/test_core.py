"""chat_core's decisions as pure code: no loop, no socket, no store."""

from __future__ import annotations

import msgspec
import pytest

from chat_core.core import ChatCore
from parley import frames as F
from parley.ids import direct_conv_id
from parley.records import (
    AttachmentRow, Command, ConvRow, ConvState, CreateConv, EdgeFacts, EventRecord, Facts, InsertMessage, MemberRow,
    PutMember, PutOutbox, SetConvHead, SetReadSeq,
)

NOW = 1_700_000_000_000
_json = msgspec.json.Decoder()


def cmd(user: str, body: F.WriteRequest, conv: str = "c1", session: str = "s1") -> Command:
    return Command(conv, user, "gw", session, body)


def group(*members: str, kind: str = "group", history: str = "joined", visibility: str = "private",
          last_seq: int = 0) -> ConvState:
    row = ConvRow(id="c1", kind=kind, title="t", visibility=visibility, password_hash=None,
                  history=history, owner=members[0], created_at=NOW, last_seq=last_seq)
    roles = ["owner"] + ["member"] * (len(members) - 1)
    return ConvState(row, {u: MemberRow(conv="c1", user=u, role=r, visible_from=1, read_seq=0, joined_at=NOW)
                           for u, r in zip(members, roles)})


def decide(core: ChatCore, *cmds: Command, facts: Facts | None = None) -> tuple[list[dict], list]:
    facts = facts or Facts()
    batch = core.begin()
    replies = [_json.decode(core.handle(c, facts, NOW, batch)) for c in cmds]
    mutations = batch.finish(core.convs)
    core.committed(batch)
    return replies, mutations


def send(user: str, cmid: str, text: str = "hi", **kw: object) -> Command:
    return cmd(user, F.Send(rid=cmid, conv="c1", cmid=cmid, text=text, **kw))  # type: ignore[arg-type]


def test_sends_get_dense_seqs_in_command_order_and_one_head_write_per_batch():
    core = ChatCore()
    core.convs["c1"] = group("a", "b")
    replies, mutations = decide(core, send("a", "1"), send("b", "2"), send("a", "3"))
    assert [r["seq"] for r in replies] == [1, 2, 3]
    assert [m.message.seq for m in mutations if isinstance(m, InsertMessage)] == [1, 2, 3]
    assert [m for m in mutations if isinstance(m, SetConvHead)] == [SetConvHead("c1", 3)]
    # Cursors are coalesced: one write per (conv, user), at its final value.
    assert sorted((m.user, m.read_seq) for m in mutations if isinstance(m, SetReadSeq)) == [("a", 3), ("b", 2)]
    outbox = [m.record for m in mutations if isinstance(m, PutOutbox)]
    assert [_json.decode(r.frame)["message"]["seq"] for r in outbox] == [1, 2, 3]
    assert isinstance(mutations[-1], PutOutbox)  # events are written after the state they describe


def test_a_repeated_cmid_returns_the_original_within_a_batch_across_batches_and_from_the_store():
    core = ChatCore()
    core.convs["c1"] = group("a", "b")
    replies, _ = decide(core, send("a", "x"), send("a", "x"))
    assert replies[0]["seq"] == replies[1]["seq"] == 1
    replies, mutations = decide(core, send("a", "x"))
    assert replies[0]["seq"] == 1 and mutations == []
    fresh = ChatCore()  # after a restart, only the store knows
    fresh.convs["c1"] = group("a", "b", last_seq=1)
    replies, mutations = decide(fresh, send("a", "x"), facts=Facts(idem={("c1", "a", "x"): (1, 42)}))
    assert (replies[0]["seq"], replies[0]["ts"]) == (1, 42) and mutations == []
    # The key is per sender: the same cmid from someone else is a new message.
    replies, _ = decide(fresh, send("b", "x"))
    assert replies[0]["seq"] == 2


def test_a_retried_send_gets_its_original_answer_even_after_the_sender_left():
    core = ChatCore()
    core.convs["c1"] = group("a", "b")
    (first,), _ = decide(core, send("b", "k"))
    decide(core, cmd("b", F.ConvLeave(rid="l", conv="c1")))
    (again,), mutations = decide(core, send("b", "k"))
    assert (again["op"], again["seq"]) == ("ok", first["seq"]) and mutations == []
    (other,), _ = decide(core, send("b", "new"))
    assert other["code"] == "not_found"


def test_a_rejected_command_changes_nothing():
    core = ChatCore()
    core.convs["c1"] = group("owner", "sub", kind="channel")
    replies, mutations = decide(core, send("sub", "1"))
    assert replies[0]["op"] == "error" and replies[0]["code"] == "forbidden"
    assert mutations == [] and core.convs["c1"].row.last_seq == 0
    replies, _ = decide(core, send("owner", "2"))
    assert replies[0]["seq"] == 1


def test_a_failed_write_forgets_cached_state_so_seqs_are_reloaded_from_the_store():
    core = ChatCore()
    core.convs["c1"] = group("a")
    batch = core.begin()
    core.handle(send("a", "1"), Facts(), NOW, batch)
    assert core.convs["c1"].row.last_seq == 1
    core.forget()  # the worker calls this when the store rejects the batch
    assert "c1" not in core.convs
    assert core.needs([send("a", "1")]).convs == {"c1"}
    assert core.needs([send("a", "1")]).idem == {("c1", "a", "1")}


def test_needs_asks_only_for_what_is_not_cached():
    core = ChatCore()
    core.convs["c1"] = group("a", "b")
    needs = core.needs([
        send("a", "k"), cmd("a", F.Edit(rid="e", conv="c1", seq=3, text="x")),
        cmd("a", F.ConvCreate(rid="n", kind="group", members=["b", "c"]), conv="c2"),
    ])
    assert needs.convs == {"c2"}
    assert needs.idem == {("c1", "a", "k")}
    assert needs.messages == {("c1", 3)}
    assert needs.users == {"b", "c"}


def attachment(id_: str, conv: str = "c1", uploader: str = "a", uploaded: bool = True) -> AttachmentRow:
    return AttachmentRow(id=id_, conv=conv, uploader=uploader, name="f.png", mime="image/png", size=3,
                         created_at=NOW, uploaded=uploaded)


def test_a_send_carries_only_uploaded_attachments_of_its_sender_in_its_conversation():
    core = ChatCore()
    core.convs["c1"] = group("a", "b")
    assert core.needs([send("a", "1", attachments=["x", "y"])]).attachments == {"x", "y"}
    facts = Facts(attachments={r.id: r for r in [
        attachment("mine"), attachment("elsewhere", conv="c2"), attachment("bobs", uploader="b"),
        attachment("pending", uploaded=False)]})
    replies, mutations = decide(
        core, send("a", "1", attachments=["elsewhere"]), send("a", "2", attachments=["bobs"]),
        send("a", "3", attachments=["unknown"]), send("a", "4", attachments=["mine", "pending"]),
        send("a", "5", text="", attachments=["mine", "mine"]), facts=facts)
    assert [r.get("code") for r in replies] == ["not_found", "not_found", "not_found", "conflict", None]
    # Only the last was stored, as seq 1, with its attachment once.
    (stored,) = [m.message for m in mutations if isinstance(m, InsertMessage)]
    assert (stored.seq, stored.text, stored.attachments) == (1, "", ["mine"])
    event = _json.decode(next(m.record for m in mutations if isinstance(m, PutOutbox)).frame)
    assert event["message"]["attachments"] == ["mine"]


def test_create_adds_members_and_tells_each_of_them_personally():
    core = ChatCore()
    body = F.ConvCreate(rid="r", kind="group", members=["b", "b", "a"], title="team")
    replies, mutations = decide(core, cmd("a", body, conv="c9"), facts=Facts(users={"b"}))
    conv = replies[0]["conv"]
    assert (conv["id"], conv["role"], conv["owner"], conv["title"]) == ("c9", "owner", "a", "team")
    assert any(isinstance(m, CreateConv) for m in mutations)
    assert sorted((m.row.user, m.row.role) for m in mutations if isinstance(m, PutMember)) == \
        [("a", "owner"), ("b", "member")]
    personal = [r for r in _records(mutations) if r.to is not None]
    assert sorted((r.to[0], _json.decode(r.frame)["conv"]["role"]) for r in personal) == \
        [("a", "owner"), ("b", "member")]


def test_create_refuses_unknown_users_and_a_forged_direct_id():
    core = ChatCore()
    replies, _ = decide(core, cmd("a", F.ConvCreate(rid="r", kind="group", members=["ghost"]), conv="c2"))
    assert replies[0]["code"] == "not_found"
    forged = cmd("a", F.ConvCreate(rid="r", kind="direct", members=["b"]), conv="d-not-derived")
    replies, _ = decide(core, forged, facts=Facts(users={"b"}))
    assert replies[0]["code"] == "bad_request"


def test_direct_create_is_idempotent_and_readds_a_member_who_left():
    core = ChatCore()
    conv = direct_conv_id("a", "b")
    first = cmd("a", F.ConvCreate(rid="1", kind="direct", members=["b"]), conv=conv)
    second = cmd("b", F.ConvCreate(rid="2", kind="direct", members=["a"]), conv=conv)
    replies, _ = decide(core, first, second, facts=Facts(users={"a", "b"}))
    assert replies[0]["conv"]["id"] == replies[1]["conv"]["id"] == conv
    decide(core, cmd("b", F.ConvLeave(rid="3", conv=conv), conv=conv))
    assert set(core.convs[conv].members) == {"a"}
    decide(core, cmd("a", F.ConvCreate(rid="4", kind="direct", members=["b"]), conv=conv), facts=Facts(users={"b"}))
    assert set(core.convs[conv].members) == {"a", "b"}


def test_joined_history_starts_after_the_last_message_and_full_history_at_one():
    for history, expected in (("joined", 6), ("full", 1)):
        core = ChatCore()
        core.convs["c1"] = group("a", history=history, last_seq=5)
        decide(core, cmd("a", F.ConvInvite(rid="i", conv="c1", users=["b"])), facts=Facts(users={"b"}))
        member = core.convs["c1"].members["b"]
        assert (member.visible_from, member.read_seq) == (expected, 5)


def test_join_needs_a_public_room_and_its_password():
    core = ChatCore()
    core.convs["c1"] = group("a", visibility="public")
    core.convs["c1"].row.password_hash = "argon2-hash"
    join = cmd("b", F.ConvJoin(rid="j", conv="c1"))  # the gateway found the password wrong: no hash
    replies, _ = decide(core, join)
    assert replies[0]["code"] == "forbidden"
    # The gateway matched the password against the hash it read, and the command says which.
    matched = Command("c1", "b", "gw", "s1", F.ConvJoin(rid="j", conv="c1"), edge=EdgeFacts("argon2-hash"))
    replies, _ = decide(core, matched)
    assert replies[0]["conv"]["role"] == "member"
    core.convs["c2"] = ConvState(msgspec.structs.replace(group("a").row, id="c2"), {})
    replies, _ = decide(core, cmd("b", F.ConvJoin(rid="k", conv="c2"), conv="c2"))
    assert replies[0]["code"] == "not_found"


def test_a_password_changed_after_the_gateway_checked_refuses_the_join():
    core = ChatCore()
    core.convs["c1"] = group("a", visibility="public")
    core.convs["c1"].row.password_hash = "new-hash"
    matched_old = Command("c1", "b", "gw", "s1", F.ConvJoin(rid="j", conv="c1"), edge=EdgeFacts("old-hash"))
    replies, mutations = decide(core, matched_old)
    assert (replies[0]["code"], replies[0]["rule"]) == ("forbidden", "password") and mutations == []


def test_a_new_rooms_password_arrives_as_its_hash():
    core = ChatCore()
    create = Command("c9", "a", "gw", "s1", F.ConvCreate(rid="n", kind="group", visibility="public"),
                     edge=EdgeFacts("argon2-hash"))
    replies, mutations = decide(core, create)
    assert replies[0]["conv"]["has_password"] is True
    (created,) = [m for m in mutations if isinstance(m, CreateConv)]
    assert created.row.password_hash == "argon2-hash"
    plaintext = cmd("a", F.ConvCreate(rid="p", kind="group", visibility="public", password="sesame"), conv="c8")
    replies, mutations = decide(core, plaintext)
    assert replies[0]["code"] == "bad_request" and mutations == []


def test_read_moves_forward_only_and_is_private_in_channels():
    core = ChatCore()
    core.convs["c1"] = group("a", "b", kind="channel", last_seq=4)
    replies, mutations = decide(core, cmd("b", F.Read(rid="r", conv="c1", seq=3)))
    (record,) = _records(mutations)
    assert record.to == ["b"]
    replies, mutations = decide(core, cmd("b", F.Read(rid="r", conv="c1", seq=2)))
    assert replies[0]["op"] == "ok" and mutations == []
    replies, _ = decide(core, cmd("b", F.Read(rid="r", conv="c1", seq=5)))
    assert replies[0]["code"] == "bad_request"


def test_reactions_toggle_and_repeat_harmlessly():
    core = ChatCore()
    core.convs["c1"] = group("a", "b", last_seq=1)
    msg = F.Message(conv="c1", seq=1, sender="a", ts=NOW, cmid="m", text="hi")
    facts = Facts(messages={("c1", 1): msg})
    on = cmd("b", F.React(rid="1", conv="c1", seq=1, emoji="👍", on=True))
    _, mutations = decide(core, on, on, facts=facts)
    assert len(_records(mutations)) == 1 and msg.reactions == {"👍": ["b"]}
    _, mutations = decide(core, cmd("b", F.React(rid="2", conv="c1", seq=1, emoji="👍", on=False)), facts=facts)
    assert len(_records(mutations)) == 1 and msg.reactions == {}


def test_only_the_sender_edits_and_moderators_may_delete():
    core = ChatCore()
    core.convs["c1"] = group("a", "b", "c", last_seq=1)
    core.convs["c1"].members["c"].role = "moderator"
    facts = Facts(messages={("c1", 1): F.Message(conv="c1", seq=1, sender="b", ts=NOW, cmid="m", text="t")})
    replies, _ = decide(core, cmd("c", F.Edit(rid="e", conv="c1", seq=1, text="x")), facts=facts)
    assert replies[0]["code"] == "forbidden"
    replies, mutations = decide(core, cmd("c", F.Delete(rid="d", conv="c1", seq=1)), facts=facts)
    assert replies[0]["op"] == "ok"
    tomb = _json.decode(_records(mutations)[0].frame)["message"]
    assert (tomb["deleted"], tomb["text"]) == (True, None)


def test_an_owner_who_leaves_hands_over_to_the_highest_ranked_member():
    core = ChatCore()
    core.convs["c1"] = group("a", "b", "c")
    core.convs["c1"].members["c"].role = "admin"
    decide(core, cmd("a", F.ConvLeave(rid="l", conv="c1")))
    assert core.convs["c1"].row.owner == "c" and core.convs["c1"].members["c"].role == "owner"


def _records(mutations: list) -> list[EventRecord]:
    return [m.record for m in mutations if isinstance(m, PutOutbox)]


@pytest.mark.parametrize("kind", ["group", "direct"])
def test_read_receipts_go_to_every_member_outside_channels(kind):
    core = ChatCore()
    core.convs["c1"] = group("a", "b", kind=kind, last_seq=2)
    _, mutations = decide(core, cmd("b", F.Read(rid="r", conv="c1", seq=2)))
    assert _records(mutations)[0].to is None
