"""The permission matrix: role x action x conversation kind x attribute state, generated from one
declaration (FLOOR and STATES below), plus targets, instance staff, overrides and defaults."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from moderation import policy
from moderation.policy import FOREVER, Action, InstancePolicy, Subject
from parley.errors import Forbidden, NotFound
from parley.records import ConvRow, MemberRow

NOW = 1_700_000_000_000
ROLES = ["owner", "admin", "moderator", "member"]
KINDS = ["direct", "group", "channel"]
RANK = {r: i for i, r in enumerate(reversed(ROLES))}
MOD = "moderator"

#: THE declaration. (kind, action) -> the lowest role allowed; anything absent is impossible.
FLOOR: dict[tuple[str, Action], str] = {
    **{(k, a): "member" for k in KINDS for a in (Action.READ, Action.REACT, Action.JOIN_CALL)},
    **{("direct", a): "member" for a in (Action.SEND, Action.EDIT_OWN, Action.PIN, Action.START_CALL)},
    ("group", Action.SEND): "member", ("group", Action.EDIT_OWN): "member",
    ("group", Action.START_CALL): "member", ("group", Action.DELETE_ANY): MOD, ("group", Action.KICK): MOD,
    ("group", Action.MUTE): MOD, ("group", Action.PIN): MOD, ("group", Action.INVITE): "admin",
    ("group", Action.BAN): "admin", ("group", Action.SET_INFO): "admin", ("group", Action.MANAGE_ROLES): "admin",
    ("group", Action.SET_PERMISSIONS): "owner",
    ("channel", Action.SEND): "admin", ("channel", Action.EDIT_OWN): "admin",
    ("channel", Action.START_CALL): "admin", ("channel", Action.DELETE_ANY): MOD, ("channel", Action.KICK): MOD,
    ("channel", Action.MUTE): MOD, ("channel", Action.PIN): "admin", ("channel", Action.INVITE): "admin",
    ("channel", Action.BAN): "admin", ("channel", Action.SET_INFO): "admin",
    ("channel", Action.MANAGE_ROLES): "admin", ("channel", Action.SET_PERMISSIONS): "owner",
}
CALLS = (Action.START_CALL, Action.JOIN_CALL)
#: Attribute states: the facts, and per action the rule that denies it (with the lowest role
#: exempt from it, if any). Every state not listed for an action leaves it to the role floor.
STATES: dict[str, tuple[dict[str, Any], dict[Action, tuple[str, str | None]]]] = {
    "plain": ({}, {}),
    "muted": ({"muted_until": NOW + 60_000},
              {a: ("muted", None) for a in (Action.SEND, Action.EDIT_OWN, Action.REACT, Action.PIN, *CALLS)}),
    "muted forever": ({"muted_until": FOREVER},
                      {a: ("muted", None) for a in (Action.SEND, Action.EDIT_OWN, Action.REACT, Action.PIN,
                                                    *CALLS)}),
    "mute expired": ({"muted_until": NOW}, {}),
    # An edit is writing to the conversation again: the rules of a send apply to it (issue 12).
    "read-only": ({"read_only": True}, {a: ("read_only", MOD) for a in (Action.SEND, Action.EDIT_OWN)}),
    "slow mode, too soon": ({"slow_mode_s": 30, "last_sent_at": NOW - 10_000},
                            {a: ("slow_mode", MOD) for a in (Action.SEND, Action.EDIT_OWN)}),
    "slow mode, waited": ({"slow_mode_s": 30, "last_sent_at": NOW - 30_000}, {}),
    "blocked by the peer": ({"blocked": True}, {a: ("blocked", None)
                                                for a in (Action.SEND, Action.EDIT_OWN, Action.REACT, Action.PIN,
                                                          Action.INVITE, *CALLS)}),
    "blocking the peer": ({"blocking": True}, {a: ("blocking", None)
                                               for a in (Action.SEND, Action.EDIT_OWN, Action.REACT, Action.PIN,
                                                         *CALLS)}),
    "calls off in the conversation": ({"calls_enabled": False}, {a: ("calls_off", None) for a in CALLS}),
    "a guest": ({"guest": True}, {a: ("guest_calls", None) for a in CALLS}),
    "flood": ({"repeats": 5}, {Action.SEND: ("flood", MOD)}),
    "4 repeats": ({"repeats": 4}, {}),
    "new account, a link": ({"account_age_ms": 60_000, "links": 1},
                            {a: ("new_account_links", None) for a in (Action.SEND, Action.EDIT_OWN, Action.SET_INFO)}),
    "old account, links": ({"account_age_ms": 2 * 86_400_000, "links": 3}, {}),
    "new account, 6 mentions": ({"account_age_ms": 60_000, "mentions": 6},
                                {Action.SEND: ("new_account_mentions", None)}),
    "new account, 5 mentions": ({"account_age_ms": 60_000, "mentions": 5}, {}),
    "invitee banned": ({"target_banned_until": FOREVER}, {Action.INVITE: ("target_banned", None)}),
}
ACTIONS = [a for a in Action if a is not Action.JOIN]


def expected(kind: str, action: Action, role: str, state: str) -> str | None:
    """The rule id that must deny, or None: derived from FLOOR and STATES only."""
    floor = FLOOR.get((kind, action))
    if floor is None:
        return "not_possible"
    if RANK[role] < RANK[floor]:
        return "role"
    rule = STATES[state][1].get(action)
    if rule is None:
        return None
    rule_id, exempt = rule
    return None if exempt is not None and RANK[role] >= RANK[exempt] else rule_id


def subject(kind: str, role: str | None, **facts: Any) -> Subject:
    return Subject(kind=kind, visibility="private", role=role, now=NOW, **facts)


@pytest.mark.parametrize("kind, action, role, state",
                         list(itertools.product(KINDS, ACTIONS, ROLES, STATES)))
def test_permission_matrix(kind, action, role, state):
    denial = policy.decide(subject(kind, role, **STATES[state][0]), action)
    want = expected(kind, action, role, state)
    assert (denial.rule if denial else None) == want
    if denial is not None:
        assert denial.reason and not denial.hidden  # a reason a moderator can read


def test_the_matrix_covers_every_permission_of_the_issue():
    named = {"send", "edit_own", "delete_any", "invite", "kick", "ban", "mute", "pin", "set_info",
             "manage_roles", "start_call"}
    assert named <= {a.value for a in Action}
    assert {a for _, a in FLOOR} == set(ACTIONS)


def test_denials_explain_themselves_with_the_facts():
    slow = policy.decide(subject("group", "member", slow_mode_s=30, last_sent_at=NOW - 10_000), Action.SEND)
    assert slow is not None and slow.retry_after_ms == 20_000 and "20 s" in slow.reason
    muted = policy.decide(subject("group", "member", muted_until=NOW + 600_000), Action.SEND)
    assert muted is not None and "10 min" in muted.reason
    forever = policy.decide(subject("group", "member", muted_until=FOREVER), Action.SEND)
    assert forever is not None and "until further notice" in forever.reason
    channel = policy.decide(subject("channel", "member"), Action.SEND)
    assert channel is not None and channel.reason == "only the owner and admins post in a channel"
    with pytest.raises(Forbidden) as err:
        policy.check(subject("group", "member", muted_until=NOW + 1), Action.SEND)
    assert err.value.rule == "muted"


@pytest.mark.parametrize("actor, target, action", list(itertools.product(
    ROLES, ROLES, [Action.KICK, Action.BAN, Action.MUTE, Action.MANAGE_ROLES])))
def test_moderators_act_only_on_members_below_them(actor, target, action):
    denial = policy.decide(subject("group", actor, target_role=target), action)
    if RANK[actor] < RANK[FLOOR[("group", action)]]:
        assert denial is not None and denial.rule == "role"
    elif RANK[target] >= RANK[actor]:
        assert denial is not None and denial.rule == "outranked"
    else:
        assert denial is None


@pytest.mark.parametrize("actor, new_role", list(itertools.product(["owner", "admin"], ROLES)))
def test_roles_given_must_be_below_the_givers_except_an_owner_handing_over(actor, new_role):
    denial = policy.decide(subject("group", actor, target_role="member", new_role=new_role), Action.MANAGE_ROLES)
    allowed = RANK[new_role] < RANK[actor] or (actor == "owner" and new_role == "owner")
    assert (denial is None) is allowed, denial


@pytest.mark.parametrize("instance_role, member_role", list(itertools.product(
    ["admin", "moderator"], [None, "member", "admin"])))
def test_instance_staff_never_hand_a_conversation_to_someone(instance_role, member_role):
    """Finding 8 of issue 12: only the owner transfers ownership, on every path."""
    s = Subject(kind="group", visibility="private", role=member_role, now=NOW, instance_role=instance_role,
                target_role="member", new_role="owner")
    denial = policy.decide(s, Action.MANAGE_ROLES)
    assert denial is not None and denial.rule == "owner_handover", denial


@pytest.mark.parametrize("instance_role, member_role, action", list(itertools.product(
    ["admin", "moderator", None], [None, "member"], ACTIONS)))
def test_instance_staff_moderate_any_conversation_without_being_members(instance_role, member_role, action):
    s = Subject(kind="group", visibility="private", role=member_role, now=NOW, instance_role=instance_role,
                target_role="owner")
    denial = policy.decide(s, action)
    staff_may = instance_role is not None and action in {
        Action.DELETE_ANY, Action.KICK, Action.BAN, Action.MUTE, Action.MANAGE_ROLES}
    if staff_may:
        assert denial is None  # even on the conversation's owner
    elif member_role is None:
        assert denial is not None and denial.hidden and denial.rule == "not_member"
    else:
        assert (denial.rule if denial else None) == expected("group", action, "member", "plain") or \
            (denial is not None and denial.rule == "outranked")


def test_a_ban_keeps_a_user_out_until_it_ends():
    assert policy.decide(subject("group", None, banned_until=FOREVER), Action.JOIN).rule == "banned"
    assert policy.decide(subject("group", None, banned_until=NOW + 1), Action.JOIN).rule == "banned"
    assert policy.decide(subject("group", None, banned_until=NOW), Action.JOIN) is None
    assert policy.decide(subject("group", None), Action.JOIN) is None


def test_conversation_overrides_then_instance_defaults_then_the_built_in_floor():
    instance = InstancePolicy(defaults={("group", "invite"): "member", ("channel", "send"): "moderator"})
    assert policy.decide(subject("group", "member"), Action.INVITE, instance) is None
    assert policy.decide(subject("channel", "moderator"), Action.SEND, instance) is None
    assert policy.decide(subject("channel", "member"), Action.SEND, instance).rule == "role"
    # The conversation's own override wins over the instance default.
    s = subject("group", "member", overrides={"invite": "admin", "pin": "member"})
    assert policy.decide(s, Action.INVITE, instance).rule == "role"
    assert policy.decide(s, Action.PIN, instance) is None
    # Overrides cannot make possible what the kind does not have, nor touch role management.
    assert policy.decide(subject("direct", "member", overrides={"invite": "member"}), Action.INVITE).rule == \
        "not_possible"
    assert policy.decide(subject("group", "member", overrides={"manage_roles": "member"}),
                         Action.MANAGE_ROLES).rule == "role"
    with pytest.raises(ValueError):
        InstancePolicy(defaults={("direct", "invite"): "member"})
    assert InstancePolicy.from_json('{"defaults": {"group.invite": "member"}, "new_account_s": 60}') == \
        InstancePolicy(defaults={("group", "invite"): "member"}, new_account_s=60)


def test_instance_thresholds_apply():
    strict = InstancePolicy(new_account_s=7 * 86_400, new_account_max_links=0)
    s = subject("group", "member", account_age_ms=2 * 86_400_000, links=1)
    assert policy.decide(s, Action.SEND) is None
    assert policy.decide(s, Action.SEND, strict).rule == "new_account_links"
    assert policy.decide(subject("group", "member", repeats=3), Action.SEND, InstancePolicy(flood_repeats=3)).rule \
        == "flood"


def row(kind: str, visibility: str = "private") -> ConvRow:
    return ConvRow(id="c", kind=kind, title=None, visibility=visibility, password_hash=None, history="joined",
                   owner="o", created_at=0)


def member(role: str) -> MemberRow:
    return MemberRow(conv="c", user="u", role=role, visible_from=1, read_seq=0, joined_at=0)


@pytest.mark.parametrize("kind, action, role", list(itertools.product(KINDS, ACTIONS, ROLES)))
def test_authorize_and_may_follow_the_role_floor(kind, action, role):
    allowed = expected(kind, action, role, "plain") is None
    if allowed:
        assert policy.authorize(row(kind), member(role), action).role == role
    else:
        with pytest.raises(Forbidden):
            policy.authorize(row(kind), member(role), action)
    assert policy.may(row(kind), member(role), action) is allowed


@pytest.mark.parametrize("action", ACTIONS)
def test_non_members_learn_nothing_of_private_conversations(action):
    with pytest.raises(NotFound):
        policy.authorize(row("group"), None, action)
    with pytest.raises(Forbidden, match="join"):
        policy.authorize(row("group", visibility="public"), None, action)


def test_links_are_counted_cheaply():
    assert policy.count_links("hello there") == 0
    assert policy.count_links("see https://a.example and www.b.example, HTTP://C") == 3


@pytest.mark.parametrize(("guest", "allow_guests", "denied"),
                         [(True, False, "guests"), (True, True, None), (False, False, None)])
def test_guests_join_only_where_guests_are_admitted(guest, allow_guests, denied):
    s = Subject(kind="group", visibility="public", role=None, guest=guest, allow_guests=allow_guests)
    denial = policy.decide(s, Action.JOIN)
    assert (denial.rule if denial else None) == denied


@pytest.mark.parametrize("action", [Action.START_CALL, Action.JOIN_CALL])
def test_the_instance_switches_calls_off_and_lets_guests_call(action):
    off = policy.decide(subject("group", "owner"), action, InstancePolicy(calls=False))
    assert off is not None and off.rule == "calls_off" and "server" in off.reason
    assert policy.decide(subject("group", "member", guest=True), action, InstancePolicy(guest_calls=True)) is None


@pytest.mark.parametrize(("who_may_add", "contact", "directly"), [
    ("anyone", False, True), ("anyone", True, True), ("contacts", True, True), ("contacts", False, False),
    ("nobody", True, False), ("nobody", False, False)])
def test_who_may_add_a_user_directly_is_their_choice(who_may_add, contact, directly):
    assert policy.adds_directly(who_may_add, contact) is directly
