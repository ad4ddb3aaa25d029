"""Adding someone to a conversation respects their choice (issue 12: one user put a stranger into
300 new groups): who may add them directly, an invitation to accept or decline otherwise, and
blocks above both. chat_core decides with the facts the gateway attached (EdgeFacts)."""

from __future__ import annotations

import msgspec

from chat_core.core import ChatCore
from parley import frames as F
from parley.records import (
    Command, ConvRow, ConvState, DropInvitation, EdgeFacts, Facts, InvitationRow, MemberRow, PutInvitation,
    PutMember, PutOutbox, SanctionRow,
)

NOW = 1_700_000_000_000
_json = msgspec.json.Decoder()
#: The users' choices, as the gateway read them (the others chose nothing: anyone may add them).
CHOICES = {"shy": "contacts", "hermit": "nobody", "friend": "contacts"}


class Decided:
    def __init__(self, core: ChatCore, cmd: Command, facts: Facts | None = None) -> None:
        facts = facts or Facts(users={"open", "shy", "hermit", "friend", "a"})
        batch = core.begin()
        self.reply = _json.decode(core.handle(cmd, facts, NOW, batch))
        self.mutations = batch.finish(core.convs)
        core.committed(batch)
        self.events = [(_json.decode(m.record.frame), m.record.to) for m in self.mutations if isinstance(m, PutOutbox)]

    def of(self, kind: type) -> list:
        return [m for m in self.mutations if isinstance(m, kind)]

    def events_of(self, type_: str) -> list[tuple[dict, list[str] | None]]:
        return [(e, to) for e, to in self.events if e["type"] == type_]


def by_owner(body: F.WriteRequest, conv: str = "c1", user: str = "a") -> Command:
    return Command(conv, user, "gw", "s-" + user, body, edge=EdgeFacts(who_may_add=CHOICES, contacts=["friend"]))


def as_user(user: str, body: F.WriteRequest, conv: str = "c1") -> Command:
    return Command(conv, user, "gw", "s-" + user, body)


def group(owner: str = "a") -> ConvState:
    row = ConvRow(id="c1", kind="group", title="team", visibility="private", password_hash=None, history="joined",
                  owner=owner, created_at=NOW)
    return ConvState(row, {owner: MemberRow(conv="c1", user=owner, role="owner", visible_from=1, read_seq=0,
                                            joined_at=NOW)})


def test_a_new_group_adds_who_lets_the_creator_and_invites_the_others():
    core = ChatCore()
    r = Decided(core, by_owner(F.ConvCreate(rid="n", kind="group", members=["open", "shy", "hermit", "friend"])))
    assert r.reply["invited"] == ["shy", "hermit"]
    assert sorted(m.row.user for m in r.of(PutMember)) == ["a", "friend", "open"]
    assert sorted((m.row.user, m.row.by) for m in r.of(PutInvitation)) == [("hermit", "a"), ("shy", "a")]
    invites = r.events_of("invite.new")
    assert sorted(to[0] for _, to in invites) == ["hermit", "shy"]  # each to the invitee alone
    event = invites[0][0]
    assert (event["conv"], event["kind"], event["title"], event["by"], event["at"]) == ("c1", "group", None, "a", NOW)
    assert not [e for e, _ in r.events_of("member.joined") if e["user"] in ("shy", "hermit")]


def test_an_invite_adds_or_invites_each_user_by_their_choice_and_says_which():
    core = ChatCore()
    core.convs["c1"] = group()
    r = Decided(core, by_owner(F.ConvInvite(rid="i", conv="c1", users=["open", "shy", "friend"])))
    assert (r.reply["added"], r.reply["invited"]) == (["open", "friend"], ["shy"])
    assert set(core.convs["c1"].members) == {"a", "open", "friend"}
    again = Decided(core, by_owner(F.ConvInvite(rid="j", conv="c1", users=["shy"])))
    assert again.reply["invited"] == ["shy"] and again.mutations == []  # invited already: nothing new


def test_without_the_gateways_facts_everyone_is_added_as_the_default_lets_them():
    core = ChatCore()
    core.convs["c1"] = group()
    r = Decided(core, as_user("a", F.ConvInvite(rid="i", conv="c1", users=["shy"])))
    assert (r.reply["added"], r.reply["invited"]) == (["shy"], [])


def test_accepting_an_invitation_joins_and_declining_drops_it():
    core = ChatCore()
    core.convs["c1"] = group()
    Decided(core, by_owner(F.ConvInvite(rid="i", conv="c1", users=["shy", "hermit"])))
    r = Decided(core, as_user("shy", F.InviteAccept(rid="y", conv="c1")))
    assert r.reply["conv"]["role"] == "member"
    assert r.of(DropInvitation) == [DropInvitation("c1", "shy")]
    (joined, _), = r.events_of("member.joined")
    assert (joined["user"], joined["by"]) == ("shy", "a")
    assert r.events_of("invite.removed") == [({"op": "event", "type": "invite.removed", "conv": "c1",
                                               "accepted": True}, ["shy"])]
    r = Decided(core, as_user("hermit", F.InviteDecline(rid="n", conv="c1")))
    assert r.reply == {"op": "ok", "rid": "n"} and r.of(PutMember) == []
    assert r.of(DropInvitation) == [DropInvitation("c1", "hermit")]
    assert [to for _, to in r.events_of("invite.removed")] == [["hermit"]]
    assert "hermit" not in core.convs["c1"].invitations


def test_no_invitation_no_entry_and_a_ban_outlasts_one():
    core = ChatCore()
    core.convs["c1"] = state = group()
    stranger = Decided(core, as_user("open", F.InviteAccept(rid="y", conv="c1")))
    assert stranger.reply["code"] == "not_found" and stranger.mutations == []
    # A private conversation without an invitation answers as one that does not exist.
    assert stranger.reply["message"] == Decided(core, as_user("open", F.InviteAccept(rid="z", conv="c-none"),
                                                              conv="c-none")).reply["message"]
    state.invitations["shy"] = InvitationRow(conv="c1", user="shy", by="a", at=NOW)
    state.bans["shy"] = SanctionRow(conv="c1", user="shy", kind="ban", until=NOW + 60_000, by="a", at=NOW)
    banned = Decided(core, as_user("shy", F.InviteAccept(rid="y", conv="c1")))
    assert (banned.reply["code"], banned.reply["rule"]) == ("forbidden", "banned")


def test_a_user_who_blocks_the_inviter_is_neither_added_nor_invited():
    core = ChatCore()
    core.convs["c1"] = group()
    facts = Facts(users={"shy", "open"}, blocks={("shy", "a")})
    r = Decided(core, by_owner(F.ConvInvite(rid="i", conv="c1", users=["open", "shy"])), facts)
    assert (r.reply["code"], r.reply["rule"]) == ("forbidden", "blocked") and r.mutations == []
    r = Decided(ChatCore(), by_owner(F.ConvCreate(rid="n", kind="group", members=["shy"])), facts)
    assert r.reply["rule"] == "blocked" and r.mutations == []


def test_joining_by_any_way_settles_a_pending_invitation():
    core = ChatCore()
    core.convs["c1"] = state = group()
    state.row.visibility = "public"
    Decided(core, by_owner(F.ConvInvite(rid="i", conv="c1", users=["shy"])))
    r = Decided(core, as_user("shy", F.ConvJoin(rid="j", conv="c1")))
    assert r.reply["conv"]["role"] == "member" and r.of(DropInvitation) == [DropInvitation("c1", "shy")]
    assert state.invitations == {}
