"""chat_core's moderation as pure code: sanctions, settings, pins, blocks, spam control, audit.
Time is injected: every decision gets the command's time, so expiry is tested without sleeping."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from chat_core.core import ChatCore
from moderation.filters import WordList
from moderation.policy import InstancePolicy
from parley import frames as F
from parley.ids import direct_conv_id
from parley.limits import Limits
from parley.records import (
    AuditEntry, Command, ConvRow, ConvState, DropBlock, DropMember, DropSanction, EdgeFacts, Facts, InsertMessage,
    MemberRow, PutAudit, PutBlock, PutMember, PutOutbox, PutSanction, UpdateConv, UpdateMessage,
)

NOW = 1_700_000_000_000
_json = msgspec.json.Decoder()


def cmd(user: str, body: F.WriteRequest, conv: str = "c1", instance_role: str | None = None) -> Command:
    return Command(conv, user, "gw", "s-" + user, body, instance_role)


def conv(*members: tuple[str, str], kind: str = "group", visibility: str = "private") -> ConvState:
    row = ConvRow(id="c1", kind=kind, title="t", visibility=visibility, password_hash=None, history="joined",
                  owner=members[0][0], created_at=NOW)
    return ConvState(row, {u: MemberRow(conv="c1", user=u, role=r, visible_from=1, read_seq=0, joined_at=NOW)
                           for u, r in members})


def core_with(state: ConvState, **kw: Any) -> ChatCore:
    core = ChatCore(**kw)
    core.convs[state.row.id] = state
    return core


class Run:
    """One decided batch: replies, mutations, events and audit entries."""

    def __init__(self, core: ChatCore, cmds: list[Command], facts: Facts | None, now: int) -> None:
        facts = facts or Facts()
        core.absorb(facts)  # as the worker does after prefetch
        batch = core.begin()
        self.replies = [_json.decode(core.handle(c, facts, now, batch)) for c in cmds]
        self.mutations = batch.finish(core.convs)
        core.committed(batch)
        self.events = [(_json.decode(m.record.frame), m.record) for m in self.mutations if isinstance(m, PutOutbox)]
        self.audit: list[AuditEntry] = [m.entry for m in self.mutations if isinstance(m, PutAudit)]

    @property
    def reply(self) -> dict:
        (only,) = self.replies
        return only

    def of(self, kind: type) -> list:
        return [m for m in self.mutations if isinstance(m, kind)]

    def event(self, type_: str) -> dict:
        found = [e for e, _ in self.events if e["type"] == type_]
        assert found, f"no {type_} in {[e['type'] for e, _ in self.events]}"
        return found[0]


def run(core: ChatCore, *cmds: Command, facts: Facts | None = None, now: int = NOW) -> Run:
    return Run(core, list(cmds), facts, now)


_n = iter(range(10**9))


def send(user: str, text: str | None = None, conv_id: str = "c1", instance_role: str | None = None,
         **kw: Any) -> Command:
    n = next(_n)
    return cmd(user, F.Send(rid=f"r{n}", conv=conv_id, cmid=f"m{n}", text=text or f"message {n}", **kw), conv_id,
               instance_role)


def denied(result: Run, rule: str | None, code: str = "forbidden") -> dict:
    reply = result.reply
    assert (reply["op"], reply["code"], reply.get("rule")) == ("error", code, rule), reply
    assert reply["message"]
    return reply


def test_a_mute_stops_sends_until_it_ends_and_is_announced_and_audited():
    core = core_with(conv(("o", "owner"), ("mod", "moderator"), ("m", "member")))
    r = run(core, cmd("mod", F.MemberMute(rid="1", conv="c1", user="m", duration_s=60, reason="calm down")))
    assert r.reply["until"] == NOW + 60_000
    (sanction,) = r.of(PutSanction)
    assert (sanction.row.kind, sanction.row.until, sanction.row.by) == ("mute", NOW + 60_000, "mod")
    assert r.event("member.muted") == {"op": "event", "type": "member.muted", "conv": "c1", "user": "m",
                                       "until": NOW + 60_000, "by": "mod", "reason": "calm down"}
    (entry,) = r.audit
    assert (entry.actor, entry.action, entry.target, entry.conv, entry.reason, entry.details) == \
        ("mod", "member.mute", "m", "c1", "calm down", {"until": NOW + 60_000})
    reply = denied(run(core, send("m"), now=NOW + 59_999), "muted")
    assert "1 s" in reply["message"]
    assert run(core, send("m"), now=NOW + 60_000).reply["op"] == "ok"  # on time, not a moment later


def test_an_unmute_lifts_it_and_leaving_does_not():
    state = conv(("o", "owner"), ("m", "member"), visibility="public")
    core = core_with(state)
    run(core, cmd("o", F.MemberMute(rid="1", conv="c1", user="m")))
    run(core, cmd("m", F.ConvLeave(rid="2", conv="c1")), cmd("m", F.ConvJoin(rid="3", conv="c1")))
    denied(run(core, send("m")), "muted")
    r = run(core, cmd("o", F.MemberUnmute(rid="4", conv="c1", user="m")))
    assert r.of(DropSanction) == [DropSanction("c1", "m", "mute")] and r.event("member.unmuted")["by"] == "o"
    assert [e.action for e in r.audit] == ["member.unmute"]
    assert run(core, send("m")).reply["op"] == "ok"


@pytest.mark.parametrize("actor, target, rule", [
    ("m", "m2", "role"), ("mod", "mod2", "outranked"), ("mod", "adm", "outranked"), ("adm", "o", "outranked")])
def test_moderation_needs_the_permission_and_a_lower_ranked_target(actor, target, rule):
    core = core_with(conv(("o", "owner"), ("adm", "admin"), ("mod", "moderator"), ("mod2", "moderator"),
                          ("m", "member"), ("m2", "member")))
    for body in (F.MemberMute(rid="1", conv="c1", user=target), F.MemberKick(rid="2", conv="c1", user=target)):
        r = run(core, cmd(actor, body))
        denied(r, rule)
        assert r.mutations == []  # a denial leaves no trace


def test_a_kick_removes_the_member_who_may_come_back_to_a_public_room():
    core = core_with(conv(("o", "owner"), ("m", "member"), visibility="public"))
    r = run(core, cmd("o", F.MemberKick(rid="1", conv="c1", user="m", reason="spam")))
    assert r.of(DropMember) == [DropMember("c1", "m")]
    left, record = next((e, rec) for e, rec in r.events if e["type"] == "member.left")
    assert (left["by"], left["reason"], record.also) == ("o", "spam", ["m"])
    assert [(e.action, e.target, e.reason) for e in r.audit] == [("member.kick", "m", "spam")]
    assert run(core, cmd("m", F.ConvJoin(rid="2", conv="c1"))).reply["op"] == "ok"


def test_a_ban_removes_keeps_out_blocks_invites_and_ends_with_unban_or_time():
    core = core_with(conv(("o", "owner"), ("m", "member"), visibility="public"))
    r = run(core, cmd("o", F.MemberBan(rid="1", conv="c1", user="m", duration_s=3600)))
    assert r.of(DropMember) == [DropMember("c1", "m")]
    banned, record = next((e, rec) for e, rec in r.events if e["type"] == "member.banned")
    assert (banned["until"], record.also) == (NOW + 3_600_000, ["m"])
    assert [e.action for e in r.audit] == ["member.ban"]
    denied(run(core, cmd("m", F.ConvJoin(rid="2", conv="c1"))), "banned")
    invite = cmd("o", F.ConvInvite(rid="3", conv="c1", users=["m"]))
    denied(run(core, invite, facts=Facts(users={"m"})), "target_banned")
    assert run(core, cmd("m", F.ConvJoin(rid="4", conv="c1")), now=NOW + 3_600_000).reply["op"] == "ok"
    run(core, cmd("o", F.MemberBan(rid="5", conv="c1", user="m")))  # for good this time
    denied(run(core, cmd("m", F.ConvJoin(rid="6", conv="c1")), now=NOW + 10**12), "banned")
    r = run(core, cmd("o", F.MemberUnban(rid="7", conv="c1", user="m")))
    assert r.of(DropSanction) == [DropSanction("c1", "m", "ban")] and [e.action for e in r.audit] == ["member.unban"]
    assert run(core, cmd("m", F.ConvJoin(rid="8", conv="c1"))).reply["op"] == "ok"


def test_a_user_who_is_not_a_member_can_be_banned_beforehand_if_they_exist():
    core = core_with(conv(("o", "owner"), visibility="public"))
    denied(run(core, cmd("o", F.MemberBan(rid="1", conv="c1", user="ghost"))), None, "not_found")
    assert run(core, cmd("o", F.MemberBan(rid="2", conv="c1", user="x")), facts=Facts(users={"x"})).reply["op"] == "ok"
    denied(run(core, cmd("x", F.ConvJoin(rid="3", conv="c1"))), "banned")


def test_roles_are_given_below_ones_own_and_the_owner_hands_over():
    state = conv(("o", "owner"), ("adm", "admin"), ("m", "member"))
    core = core_with(state)
    r = run(core, cmd("adm", F.MemberRole(rid="1", conv="c1", user="m", role="moderator")))
    assert r.reply["op"] == "ok" and state.members["m"].role == "moderator"
    assert r.event("member.updated") == {"op": "event", "type": "member.updated", "conv": "c1", "user": "m",
                                         "role": "moderator", "by": "adm"}
    assert [(e.action, e.details) for e in r.audit] == [("member.role", {"role": "moderator", "previous": "member"})]
    denied(run(core, cmd("adm", F.MemberRole(rid="2", conv="c1", user="m", role="admin"))), "role_too_high")
    r = run(core, cmd("o", F.MemberRole(rid="3", conv="c1", user="adm", role="owner")))
    assert (state.row.owner, state.members["adm"].role, state.members["o"].role) == ("adm", "owner", "admin")
    assert sorted(m.row.user for m in r.of(PutMember)) == ["adm", "o"]
    staff = cmd("root", F.MemberRole(rid="4", conv="c1", user="adm", role="member"), instance_role="admin")
    denied(run(core, staff), "owner")
    assert run(core, cmd("root", F.MemberRole(rid="5", conv="c1", user="o", role="member"),
                         instance_role="admin")).reply["op"] == "ok"


def test_conv_update_changes_settings_tells_every_member_and_is_audited():
    state = conv(("o", "owner"), ("adm", "admin"), ("m", "member"))
    state.members["m"].visible_from = 5
    core = core_with(state)
    denied(run(core, cmd("m", F.ConvUpdate(rid="1", conv="c1", title="mine"))), "role")
    r = run(core, cmd("adm", F.ConvUpdate(rid="2", conv="c1", title="news", slow_mode_s=10, read_only=True,
                                          history="full")))
    view = r.reply["conv"]
    assert (view["title"], view["slow_mode_s"], view["read_only"], view["history"]) == ("news", 10, True, "full")
    assert [m.row.title for m in r.of(UpdateConv)] == ["news"]
    assert sorted(rec.to[0] for e, rec in r.events if e["type"] == "conv.updated") == ["adm", "m", "o"]
    assert state.members["m"].visible_from == 1  # full history now shows the whole conversation
    (entry,) = r.audit
    assert entry.action == "conv.update" and entry.details == {"title": "news", "history": "full", "slow_mode_s": 10,
                                                               "read_only": True}
    # Only the owner changes who may do what.
    denied(run(core, cmd("adm", F.ConvUpdate(rid="3", conv="c1", permissions={"pin": "member"}))), "role")
    r = run(core, cmd("o", F.ConvUpdate(rid="4", conv="c1", permissions={"pin": "member"})))
    assert r.reply["conv"]["permissions"] == {"pin": "member"}
    # Nothing changed: no write, no event, no audit entry.
    assert run(core, cmd("o", F.ConvUpdate(rid="5", conv="c1", title="news"))).mutations == []


def with_password_hash(user: str, body: F.WriteRequest, hashed: str) -> Command:
    """A write as the gateway publishes it: the password hashed there, the plaintext gone."""
    return Command("c1", user, "gw", "s-" + user, body, edge=EdgeFacts(password_hash=hashed))


def test_a_room_password_is_set_from_its_hash_and_cleared_with_privacy():
    state = conv(("o", "owner"), visibility="public")
    core = core_with(state)
    r = run(core, with_password_hash("o", F.ConvUpdate(rid="1", conv="c1"), "argon2-hash"))
    assert state.row.password_hash == "argon2-hash" and r.reply["conv"]["has_password"] is True
    assert r.audit[0].details == {"password": "set"}  # never the password or its hash
    r = run(core, cmd("o", F.ConvUpdate(rid="2", conv="c1", visibility="private")))
    assert state.row.password_hash is None and r.audit[0].details == {"visibility": "private", "password": "cleared"}
    denied(run(core, with_password_hash("o", F.ConvUpdate(rid="3", conv="c1"), "h")), None, "bad_request")
    # A plaintext password never reaches the writer from a gateway of this version: one that does
    # is refused, not stored as no password at all.
    state.row.visibility = "public"
    denied(run(core, cmd("o", F.ConvUpdate(rid="4", conv="c1", password="sesame"))), None, "bad_request")


def test_read_only_and_slow_mode_hold_members_back_but_not_moderators():
    state = conv(("o", "owner"), ("mod", "moderator"), ("m", "member"))
    state.row.slow_mode_s = 30
    core = core_with(state)
    assert run(core, send("m")).reply["op"] == "ok"
    reply = denied(run(core, send("m"), now=NOW + 10_000), "slow_mode")
    assert reply["retry_after_ms"] == 20_000
    assert run(core, send("m"), now=NOW + 30_000).reply["op"] == "ok"
    assert [run(core, send("mod")).reply["op"] for _ in range(3)] == ["ok"] * 3
    state.row.read_only = True
    denied(run(core, send("m"), now=NOW + 10**6), "read_only")
    assert run(core, send("mod")).reply["op"] == "ok"


def edit(user: str, seq: int, text: str = "fixed", conv_id: str = "c1") -> Command:
    return cmd(user, F.Edit(rid=f"e{next(_n)}", conv=conv_id, seq=seq, text=text), conv_id)


def own_messages(user: str, *seqs: int, conv_id: str = "c1") -> Facts:
    return Facts(messages={(conv_id, s): F.Message(conv=conv_id, seq=s, sender=user, ts=NOW, cmid=f"x{s}", text="t")
                           for s in seqs})


def test_edits_obey_slow_mode_read_only_and_mutes_like_sends():
    """200 edits once went through in 1.2 s under a one-hour slow mode, and members edited old
    messages of a read-only room."""
    state = conv(("o", "owner"), ("mod", "moderator"), ("m", "member"))
    state.row.slow_mode_s, state.row.last_seq = 3600, 1
    core = core_with(state)
    assert run(core, send("m")).reply["op"] == "ok"
    reply = denied(run(core, edit("m", 1), facts=own_messages("m", 1), now=NOW + 1_000), "slow_mode")
    assert reply["retry_after_ms"] == 3_599_000
    # An edit counts as a message of slow mode: the next send waits the whole interval after it.
    assert run(core, edit("m", 1), facts=own_messages("m", 1), now=NOW + 3_600_000).reply["op"] == "ok"
    denied(run(core, send("m"), now=NOW + 3_601_000), "slow_mode")
    assert [run(core, edit("mod", 2), facts=own_messages("mod", 2)).reply["op"] for _ in range(3)] == ["ok"] * 3
    state.row.slow_mode_s, state.row.read_only = 0, True
    denied(run(core, edit("m", 1), facts=own_messages("m", 1), now=NOW + 10**8), "read_only")
    assert run(core, edit("mod", 2), facts=own_messages("mod", 2)).reply["op"] == "ok"
    state.row.read_only = False
    run(core, cmd("mod", F.MemberMute(rid="mute", conv="c1", user="m")))
    denied(run(core, edit("m", 1), facts=own_messages("m", 1), now=NOW + 10**8), "muted")


def test_a_message_takes_a_bounded_number_of_edits():
    """400 edits of 16 KB once reached every member as 6.5 MB in 1.7 s: besides the edit rate
    limit, a message is edited at most max_edits_per_message times."""
    state = conv(("o", "owner"), ("m", "member"))
    state.row.last_seq = 1
    core = core_with(state, limits=Limits(max_edits_per_message=2))
    facts = own_messages("m", 1)
    assert core.needs([edit("m", 1)]).messages == {("c1", 1)}
    first, second = run(core, edit("m", 1), edit("m", 1), facts=facts).of(UpdateMessage)
    assert (first.edits, second.edits) == (1, 2)
    reply = denied(run(core, edit("m", 1), facts=facts), None, "conflict")
    assert "2" in reply["message"]
    facts = own_messages("m", 1)
    facts.edits[("c1", 1)] = 2  # as the store counted them
    denied(run(core, edit("m", 1), facts=facts), None, "conflict")
    assert run(core, cmd("m", F.Delete(rid="d", conv="c1", seq=1)), facts=facts).reply["op"] == "ok"


def test_edits_in_a_direct_chat_obey_blocks_like_sends():
    core = ChatCore()
    d = direct_conv_id("a", "b")
    run(core, cmd("a", F.ConvCreate(rid="c", kind="direct", members=["b"]), conv=d), facts=Facts(users={"b"}))
    assert run(core, send("a", conv_id=d)).reply["op"] == "ok"
    run(core, block("b", "a"), facts=Facts(users={"a"}))
    denied(run(core, edit("a", 1, conv_id=d), facts=own_messages("a", 1, conv_id=d)), "blocked")
    run(core, block("b", "a", on=False), facts=Facts(users={"a"}, blocks={("b", "a")}))
    run(core, block("a", "b"), facts=Facts(users={"b"}))
    denied(run(core, edit("a", 1, conv_id=d), facts=own_messages("a", 1, conv_id=d)), "blocking")


def react(user: str, emoji: str, on: bool = True, seq: int = 1, conv_id: str = "c1") -> Command:
    return cmd(user, F.React(rid=f"r{next(_n)}", conv=conv_id, seq=seq, emoji=emoji, on=on), conv_id)


def test_a_muted_member_may_not_react_but_may_take_a_reaction_back():
    state = conv(("o", "owner"), ("m", "member"))
    state.row.last_seq = 1
    core = core_with(state)
    message = own_messages("o", 1)  # one copy, as the store would read it again
    assert run(core, react("m", "👍"), facts=message).reply["op"] == "ok"
    run(core, cmd("o", F.MemberMute(rid="mute", conv="c1", user="m")))
    denied(run(core, react("m", "🎉"), facts=message), "muted")
    r = run(core, react("m", "👍", on=False), facts=message)
    assert r.reply["op"] == "ok" and r.event("reaction")["on"] is False


def test_a_channel_subscriber_reacts_and_a_blocked_peer_does_not():
    channel = conv(("o", "owner"), ("sub", "member"), kind="channel")
    channel.row.last_seq = 1
    assert run(core_with(channel), react("sub", "🎉"), facts=own_messages("o", 1)).reply["op"] == "ok"
    core = ChatCore()
    d = direct_conv_id("a", "b")
    run(core, cmd("a", F.ConvCreate(rid="c", kind="direct", members=["b"]), conv=d), facts=Facts(users={"b"}))
    run(core, send("b", conv_id=d))
    run(core, block("b", "a"), facts=Facts(users={"a"}))
    denied(run(core, react("a", "👍", conv_id=d), facts=own_messages("b", 1, conv_id=d)), "blocked")


def test_a_message_takes_a_bounded_number_of_reactions():
    """300 distinct reactions once fit on one message (18 KB on every copy of it)."""
    state = conv(("o", "owner"), *((f"u{i}", "member") for i in range(4)))
    state.row.last_seq = 1
    core = core_with(state, limits=Limits(max_reactions_per_message=3, max_reactions_per_user=2))
    facts = own_messages("o", 1)
    for user, emoji in (("u0", "👍"), ("u0", "🎉"), ("u1", "❤️")):
        facts.messages[("c1", 1)].reactions.setdefault(emoji, []).append(user)
    reply = denied(run(core, react("u2", "😂"), facts=facts), None, "conflict")
    assert "3" in reply["message"]
    assert run(core, react("u2", "👍"), facts=facts).reply["op"] == "ok"  # one already there: fine
    denied(run(core, react("u0", "❤️"), facts=facts), None, "conflict")  # u0 has 2 on this message
    assert run(core, react("u0", "👍", on=False), facts=facts).reply["op"] == "ok"
    assert run(core, react("u0", "❤️"), facts=facts).reply["op"] == "ok"


def test_a_conversations_title_passes_the_content_filter_and_the_link_rule():
    """A sibling of reactions' hole: a title reaches every member (and every invitee, in
    invite.new) as text, so it is screened like a message's text."""
    state = conv(("o", "owner"), ("m", "member"))
    core = core_with(state, content_filter=WordList(["scam"]), instance=InstancePolicy(new_account_s=3600))
    r = run(core, cmd("o", F.ConvUpdate(rid="1", conv="c1", title="a scam")))
    denied(r, "content_filter")
    assert state.row.title == "t" and [e.action for e in r.audit] == ["conv.reject"]
    create = cmd("o", F.ConvCreate(rid="2", kind="group", title="cheap scam"), conv="c2")
    denied(run(core, create), "content_filter")
    linked = cmd("o", F.ConvCreate(rid="3", kind="group", title="see www.spam.example"), conv="c3")
    assert core.needs([linked]).accounts == {"o"}
    denied(run(core, linked, facts=Facts(created_at={"o": NOW - 60_000})), "new_account_links")
    denied(run(core, cmd("o", F.ConvUpdate(rid="4", conv="c1", title="www.spam.example"))), "new_account_links")
    assert run(core, cmd("o", F.ConvUpdate(rid="5", conv="c1", title="news"))).reply["op"] == "ok"


def test_pins_obey_mutes_and_blocks_like_sends():
    state = conv(("o", "owner"), ("mod", "moderator"))
    state.row.last_seq = 1
    core = core_with(state)
    run(core, cmd("o", F.MemberMute(rid="mute", conv="c1", user="mod")))
    denied(run(core, cmd("mod", F.Pin(rid="p", conv="c1", seq=1)), facts=own_messages("o", 1)), "muted")
    direct = ChatCore()
    d = direct_conv_id("a", "b")
    run(direct, cmd("a", F.ConvCreate(rid="c", kind="direct", members=["b"]), conv=d), facts=Facts(users={"b"}))
    run(direct, send("b", conv_id=d))
    run(direct, block("b", "a"), facts=Facts(users={"a"}))
    pin = cmd("a", F.Pin(rid="p", conv=d, seq=1), conv=d)
    denied(run(direct, pin, facts=own_messages("b", 1, conv_id=d)), "blocked")


def test_a_duplicate_flood_is_refused_and_mutes_automatically_with_an_audit_entry():
    core = core_with(conv(("o", "owner"), ("m", "member")), instance=InstancePolicy(flood_repeats=3,
                                                                                      flood_window_s=30))
    assert [run(core, send("m", "BUY NOW"), now=NOW + i).reply["op"] for i in range(2)] == ["ok", "ok"]
    r = run(core, send("m", "BUY NOW"), now=NOW + 2)
    denied(r, "flood")
    assert r.of(InsertMessage) == []
    (sanction,) = r.of(PutSanction)
    assert (sanction.row.by, sanction.row.until) == ("system", NOW + 2 + 600_000)
    assert r.event("member.muted")["by"] == "system"
    (entry,) = r.audit
    assert (entry.actor, entry.action, entry.target, entry.details["auto"], entry.details["rule"]) == \
        ("system", "member.mute", "m", True, "flood")
    denied(run(core, send("m", "something else"), now=NOW + 3), "muted")


def test_repeats_outside_the_window_or_interleaved_are_no_flood():
    core = core_with(conv(("o", "owner"), ("m", "member")), instance=InstancePolicy(flood_repeats=3))
    replies = [run(core, send("m", "hi"), now=NOW + i * 20_000).reply["op"] for i in range(4)]
    assert replies == ["ok"] * 4  # 20 s apart: each run of repeats starts again after 30 s
    replies = [run(core, send("m", t)).reply["op"] for t in ("a", "a", "b", "a", "a")]
    assert replies == ["ok"] * 5


def test_new_accounts_may_not_post_links_or_mass_mentions():
    core = core_with(conv(("o", "owner"), ("m", "member")), instance=InstancePolicy(new_account_s=3600))
    link = send("m", "see https://spam.example")
    assert core.needs([link]).accounts == {"m"}
    assert core.needs([send("m", "no links here")]).accounts == set()
    denied(run(core, link, facts=Facts(created_at={"m": NOW - 60_000})), "new_account_links")
    mentions = send("m", "hey", mentions=[f"u{i}" for i in range(6)])
    denied(run(core, mentions), "new_account_mentions")  # the account's age is cached now
    assert run(core, send("m", "see https://ok.example"), now=NOW + 3_600_000).reply["op"] == "ok"


def test_the_content_filter_rejects_or_flags_and_both_are_audited():
    core = core_with(conv(("o", "owner"), ("m", "member")), content_filter=WordList(["scam", "free money"]))
    r = run(core, send("m", "get FREE MONEY here"))
    denied(r, "content_filter")
    assert r.of(InsertMessage) == [] and [(e.actor, e.action, e.target) for e in r.audit] == \
        [("system", "message.reject", "m")]
    assert run(core, send("m", "scampi for dinner")).reply["op"] == "ok"  # whole words only
    flagging = core_with(conv(("o", "owner"), ("m", "member")), content_filter=WordList(["scam"], "flag"))
    r = run(flagging, send("m", "is this a scam?"))
    assert r.reply["op"] == "ok" and len(r.of(InsertMessage)) == 1
    (entry,) = r.audit
    assert (entry.actor, entry.action, entry.target, entry.details) == \
        ("system", "message.flag", f"c1/{r.reply['seq']}", {"sender": "m"})
    edit = cmd("m", F.Edit(rid="e", conv="c1", seq=r.reply["seq"], text="a scam"))
    msg = F.Message(conv="c1", seq=r.reply["seq"], sender="m", ts=NOW, cmid="x", text="is this")
    denied(run(core, edit, facts=Facts(messages={("c1", msg.seq): msg})), "content_filter")


def test_pins_need_the_permission_and_are_part_of_the_conversation():
    state = conv(("o", "owner"), ("mod", "moderator"), ("m", "member"))
    state.row.last_seq = 3
    core = core_with(state)
    msgs = {("c1", s): F.Message(conv="c1", seq=s, sender="m", ts=NOW, cmid=f"x{s}", text="t") for s in (1, 2, 3)}
    denied(run(core, cmd("m", F.Pin(rid="1", conv="c1", seq=2)), facts=Facts(messages=msgs)), "role")
    r = run(core, cmd("mod", F.Pin(rid="2", conv="c1", seq=2)), facts=Facts(messages=msgs))
    assert r.event("pin") == {"op": "event", "type": "pin", "conv": "c1", "seq": 2, "on": True, "by": "mod"}
    assert state.row.pinned == [2] and r.of(UpdateConv)[0].row.pinned == [2]
    assert [(e.action, e.target) for e in r.audit] == [("message.pin", "c1/2")]
    assert run(core, cmd("mod", F.Pin(rid="3", conv="c1", seq=2)), facts=Facts(messages=msgs)).mutations == []
    run(core, cmd("mod", F.Pin(rid="4", conv="c1", seq=2, on=False)), facts=Facts(messages=msgs))
    assert state.row.pinned == []


def block(user: str, other: str, on: bool = True) -> Command:
    body = F.UserBlock(rid="b", user=other) if on else F.UserUnblock(rid="u", user=other)
    return cmd(user, body, conv=direct_conv_id(user, other))


def test_a_blocked_user_cannot_open_write_or_invite_and_unblocking_restores_it():
    core = ChatCore()
    d = direct_conv_id("a", "b")
    create = cmd("a", F.ConvCreate(rid="c", kind="direct", members=["b"]), conv=d)
    assert run(core, create, facts=Facts(users={"a", "b"})).reply["op"] == "ok"
    assert core.needs([block("b", "a")]).blocks == {("b", "a")} and not core.needs([block("b", "a")]).convs
    r = run(core, block("b", "a"), facts=Facts(users={"a"}))
    assert [(m.blocker, m.blocked) for m in r.of(PutBlock)] == [("b", "a")]
    (event, record), = r.events
    assert (event["type"], event["user"], record.to) == ("user.blocked", "a", ["b"])
    assert r.audit == []  # a user's own choice, not moderation
    denied(run(core, send("a", conv_id=d)), "blocked")
    denied(run(core, send("b", conv_id=d)), "blocking")
    # Reopening from the other side after leaving, or inviting, is refused too.
    run(core, cmd("b", F.ConvLeave(rid="l", conv=d), conv=d))
    denied(run(core, create, facts=Facts(users={"b"}, blocks={("b", "a")})), "blocked")
    core.convs["c1"] = conv(("a", "owner"))
    invite = cmd("a", F.ConvInvite(rid="i", conv="c1", users=["b"]))
    reply = denied(run(core, invite, facts=Facts(users={"b"}, blocks={("b", "a")})), "blocked")
    assert reply["message"].startswith("b: ")
    group = cmd("a", F.ConvCreate(rid="g", kind="group", members=["b"]), conv="c2")
    denied(run(core, group, facts=Facts(users={"b"}, blocks={("b", "a")})), "blocked")
    r = run(core, block("b", "a", on=False), facts=Facts(users={"a"}, blocks={("b", "a")}))
    assert r.of(DropBlock) == [DropBlock("b", "a")]
    assert run(core, create, facts=Facts(users={"b"})).reply["op"] == "ok"
    assert run(core, send("a", conv_id=d)).reply["op"] == "ok"


def test_a_block_is_decided_by_the_pairs_direct_conversation_only():
    core = ChatCore()
    denied(run(core, cmd("a", F.UserBlock(rid="1", user="b"), conv="c-elsewhere"), facts=Facts(users={"b"})),
           None, "bad_request")
    denied(run(core, block("a", "a"), facts=Facts(users={"a"})), None, "bad_request")
    denied(run(core, block("a", "ghost")), None, "not_found")
    assert run(core, block("a", "b"), block("a", "b"), facts=Facts(users={"b"})).of(PutBlock) != []
    twice = run(core, block("a", "b"), block("a", "b"), facts=Facts(users={"b"}))
    assert len(twice.of(PutBlock)) == 1  # blocking again changes nothing


@pytest.mark.parametrize("instance_role", ["admin", "moderator"])
def test_instance_staff_moderate_a_private_conversation_they_are_not_in(instance_role):
    state = conv(("o", "owner"), ("m", "member"))
    state.row.last_seq = 1
    core = core_with(state)
    msg = F.Message(conv="c1", seq=1, sender="m", ts=NOW, cmid="x", text="bad")
    for body in (F.MemberMute(rid="1", conv="c1", user="o", duration_s=60),
                 F.Delete(rid="2", conv="c1", seq=1), F.MemberKick(rid="3", conv="c1", user="m")):
        r = run(core, cmd("staff", body, instance_role=instance_role), facts=Facts(messages={("c1", 1): msg}))
        assert r.reply["op"] == "ok", r.reply
        (entry,) = r.audit
        assert entry.actor == "staff" and entry.details["instance_role"] == instance_role
    # Staff powers are moderation only: no posting into other people's conversations.
    denied(run(core, send("staff", instance_role=instance_role)), None, "not_found")
    denied(run(core, cmd("nobody", F.MemberKick(rid="4", conv="c1", user="o"))), None, "not_found")


def test_a_moderator_deleting_anothers_message_is_audited_and_the_sender_deleting_is_not():
    state = conv(("o", "owner"), ("mod", "moderator"), ("m", "member"))
    state.row.last_seq = 2
    core = core_with(state)
    msgs = {("c1", s): F.Message(conv="c1", seq=s, sender="m", ts=NOW, cmid=f"x{s}", text="t") for s in (1, 2)}
    r = run(core, cmd("mod", F.Delete(rid="1", conv="c1", seq=1)), facts=Facts(messages=msgs))
    assert [(e.actor, e.action, e.target, e.details) for e in r.audit] == \
        [("mod", "message.delete", "c1/1", {"sender": "m"})]
    assert run(core, cmd("m", F.Delete(rid="2", conv="c1", seq=2)), facts=Facts(messages=msgs)).audit == []


def test_allow_all_skips_every_rule_for_the_benchmark():
    state = conv(("o", "owner"), ("m", "member"))
    state.row.read_only = True
    core = core_with(state, enforce=False)
    assert run(core, send("m")).reply["op"] == "ok"
