"""A conversation's topic (conv.update's `topic`) as the writer decides it, and the list of mutes
and bans the gateway shows to those who may lift them (`conv.sanctions`). Pure: no loop, no store."""

from __future__ import annotations

import pytest

from gateway.reads import in_force
from moderation.filters import WordList
from moderation.policy import FOREVER, InstancePolicy
from parley import frames as F
from parley.limits import MAX_TOPIC_CHARS
from parley.records import Facts, SanctionRow, UpdateConv
from tests.unit.test_core_moderation import NOW, cmd, conv, core_with, denied, run


def topic(text: str | None) -> F.ConvUpdate:
    return F.ConvUpdate(rid="t", conv="c1", topic=text)


def test_a_topic_is_set_by_those_who_may_rename_told_to_every_member_and_audited():
    state = conv(("o", "owner"), ("adm", "admin"), ("m", "member"))
    core = core_with(state)
    denied(run(core, cmd("m", topic("mine"))), "role")
    r = run(core, cmd("adm", topic("  Plans for\n the   launch ")))
    assert r.reply["conv"]["topic"] == "Plans for the launch"  # one line, as profiles' status lines
    assert [m.row.topic for m in r.of(UpdateConv)] == ["Plans for the launch"]
    updated = {rec.to[0]: e["conv"]["topic"] for e, rec in r.events if e["type"] == "conv.updated"}
    assert updated == {"o": "Plans for the launch", "adm": "Plans for the launch", "m": "Plans for the launch"}
    (entry,) = r.audit
    assert (entry.actor, entry.action, entry.details) == ("adm", "conv.update", {"topic": "Plans for the launch"})
    # The same topic again changes nothing: no write, no event, no audit entry.
    assert run(core, cmd("o", topic("Plans for the launch"))).mutations == []
    # Empty (or only white space) clears it, as null does; the title stays.
    r = run(core, cmd("o", topic("  ")))
    assert (r.reply["conv"]["topic"], r.reply["conv"]["title"]) == (None, "t")
    assert [e.details for e in r.audit] == [{"topic": None}]
    assert run(core, cmd("o", topic(None))).mutations == []


def test_a_topic_with_control_or_format_characters_is_refused():
    core = core_with(conv(("o", "owner"), ("m", "member")))
    denied(run(core, cmd("o", topic("reversed \u202etext"))), None, "bad_request")
    assert core.convs["c1"].row.topic is None


def test_a_direct_chat_takes_no_topic():
    core = core_with(conv(("a", "member"), ("b", "member"), kind="direct"))
    denied(run(core, cmd("a", topic("us two"))), "not_possible")


def test_a_topic_passes_the_content_filter_and_the_link_rule_like_a_title():
    state = conv(("o", "owner"), ("m", "member"))
    core = core_with(state, content_filter=WordList(["scam"]), instance=InstancePolicy(new_account_s=3600))
    r = run(core, cmd("o", topic("a scam")))
    denied(r, "content_filter")
    assert state.row.topic is None and [e.action for e in r.audit] == ["conv.reject"]
    linked = cmd("o", topic("see www.spam.example"))
    assert core.needs([linked]).accounts == {"o"}  # the account's age is read for the link rule
    denied(run(core, linked, facts=Facts(created_at={"o": NOW - 60_000})), "new_account_links")


def test_a_topic_longer_than_the_limit_is_malformed():
    frame = '{"op":"conv.update","rid":"1","conv":"c1","topic":"%s"}'
    assert isinstance(F.decode_request(frame % ("x" * MAX_TOPIC_CHARS), 100), F.ConvUpdate)
    with pytest.raises(F.FrameError) as refused:
        F.decode_request(frame % ("x" * (MAX_TOPIC_CHARS + 1)), 100)
    assert (refused.value.error.code, refused.value.rid) == ("bad_request", "1")


def sanction(user: str, kind: str, until: int) -> SanctionRow:
    return SanctionRow(conv="c1", user=user, kind=kind, until=until, by="o", at=NOW - 1, reason=None)


def test_the_sanctions_shown_are_those_in_force_of_the_kinds_the_caller_may_lift():
    rows = [sanction("a", "mute", NOW + 1), sanction("b", "mute", NOW), sanction("c", "ban", FOREVER),
            sanction("d", "ban", NOW + 5)]
    mutes, bans = in_force(rows, {"mute", "ban"}, NOW)
    assert [(s.user, s.until) for s in mutes] == [("a", NOW + 1)]  # b's mute ended at NOW
    assert [(s.user, s.until) for s in bans] == [("c", None), ("d", NOW + 5)]  # no end: null
    assert in_force(rows, {"mute"}, NOW)[1] == []  # a moderator who may not ban sees no bans
