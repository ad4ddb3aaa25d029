"""Who may do what in a conversation: the one policy core (ADR 0002). Pure: values in, values out.

A decision looks at a `Subject` (the facts chat_core already holds: the conversation's kind and
settings, the actor's conversation and instance roles, mutes, bans, blocks, the clock) and an
`Action` (a named permission), and returns None (allowed) or a `Denial`: a rule id clients and
audit entries can match on, and a reason a moderator can read. Three steps, in order:
1. membership: a non-member of a private conversation learns nothing (`hidden`); instance staff
   (`admin`/`moderator` from the token) may moderate any conversation without being a member;
2. the role floor: the lowest role allowed the action, resolved as the conversation's
   `permissions` override -> the instance defaults -> the built-in `_MIN_ROLE` table;
3. the attribute rules in `RULES`, an ordered list of (id, actions, deny predicate, reason);
   the first that fires denies.
Roles rank owner > admin > moderator > member; in a channel, plain members are subscribers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

from parley.errors import Forbidden, NotFound
from parley.records import ConvRow, MemberRow

ROLE_RANK = {"member": 0, "moderator": 1, "admin": 2, "owner": 3}
#: Instance staff act above every conversation role (they may moderate an owner).
STAFF_RANK = 4
STAFF_ROLES = ("admin", "moderator")
KINDS = ("direct", "group", "channel")
#: A sanction's `until` when it has no end.
FOREVER = 2**62


class Action(StrEnum):
    READ = "read"  # history, receipts, typing, taking a reaction back: any member
    REACT = "react"  # adding a reaction: any member who may write (not while muted)
    SEND = "send"
    EDIT_OWN = "edit_own"
    DELETE_ANY = "delete_any"
    INVITE = "invite"
    KICK = "kick"
    BAN = "ban"
    MUTE = "mute"
    PIN = "pin"
    SET_INFO = "set_info"  # title, history, password, visibility, slow mode, read-only
    MANAGE_ROLES = "manage_roles"
    SET_PERMISSIONS = "set_permissions"  # the conversation's own permission overrides
    START_CALL = "start_call"
    JOIN_CALL = "join_call"  # answer a call, or join one in progress (in a channel: listen)
    JOIN = "join"  # a non-member joining a public conversation


_EVERY_KIND = {(kind, action): "member" for kind in KINDS for action in (Action.READ, Action.REACT, Action.JOIN_CALL)}
#: The built-in floor: the lowest role allowed each action, per conversation kind. Absent means
#: the action is not possible in that kind. Instance defaults and conversation overrides replace
#: single entries; they cannot make possible what is absent here.
_MIN_ROLE: dict[tuple[str, Action], str] = {
    **_EVERY_KIND,
    ("direct", Action.SEND): "member",
    ("direct", Action.EDIT_OWN): "member",
    ("direct", Action.PIN): "member",
    ("direct", Action.START_CALL): "member",
    ("group", Action.SEND): "member",
    ("group", Action.EDIT_OWN): "member",
    ("group", Action.DELETE_ANY): "moderator",
    ("group", Action.INVITE): "admin",
    ("group", Action.KICK): "moderator",
    ("group", Action.MUTE): "moderator",
    ("group", Action.BAN): "admin",
    ("group", Action.PIN): "moderator",
    ("group", Action.SET_INFO): "admin",
    ("group", Action.MANAGE_ROLES): "admin",
    ("group", Action.SET_PERMISSIONS): "owner",
    ("group", Action.START_CALL): "member",
    ("channel", Action.SEND): "admin",
    ("channel", Action.EDIT_OWN): "admin",
    ("channel", Action.DELETE_ANY): "moderator",
    ("channel", Action.INVITE): "admin",
    ("channel", Action.KICK): "moderator",
    ("channel", Action.MUTE): "moderator",
    ("channel", Action.BAN): "admin",
    ("channel", Action.PIN): "admin",
    ("channel", Action.SET_INFO): "admin",
    ("channel", Action.MANAGE_ROLES): "admin",
    ("channel", Action.SET_PERMISSIONS): "owner",
    ("channel", Action.START_CALL): "admin",
}
#: What a conversation's `permissions` (and the instance defaults) may change.
OVERRIDABLE = frozenset({
    Action.SEND, Action.EDIT_OWN, Action.DELETE_ANY, Action.INVITE, Action.KICK, Action.BAN, Action.MUTE,
    Action.PIN, Action.SET_INFO, Action.START_CALL,
})
#: What instance staff may do in any conversation, member or not.
STAFF_ACTIONS = frozenset({
    Action.DELETE_ANY, Action.KICK, Action.BAN, Action.MUTE, Action.MANAGE_ROLES,
})
#: Actions on another member: the actor must outrank the target.
ON_MEMBER = frozenset({Action.KICK, Action.BAN, Action.MUTE, Action.MANAGE_ROLES})
_VERBS = {Action.KICK: "kick", Action.BAN: "ban", Action.MUTE: "mute", Action.MANAGE_ROLES: "change the role of"}


@dataclass(frozen=True, slots=True)
class InstancePolicy:
    """Instance-wide defaults and thresholds, resolved once (operators set them with PARLEY_POLICY)."""

    #: (kind, action) -> lowest role; replaces single entries of the built-in table.
    defaults: Mapping[tuple[str, str], str] = field(default_factory=dict)
    #: Accounts younger than this are "new": they may post at most the limits below per message.
    new_account_s: int = 24 * 3600
    new_account_max_links: int = 0
    new_account_max_mentions: int = 5
    #: The same text this many times within the window is a flood: refused and muted automatically.
    flood_repeats: int = 5
    flood_window_s: int = 30
    flood_mute_s: int = 600
    #: Calls on this instance at all (admins switch them off at run time), and for guests.
    calls: bool = True
    guest_calls: bool = False
    #: The resolved floor table: built-in entries with the defaults applied.
    table: Mapping[tuple[str, str], str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        table: dict[tuple[str, str], str] = {key: role for key, role in _MIN_ROLE.items()}
        for (kind, action), role in self.defaults.items():
            if role not in ROLE_RANK:
                raise ValueError(f"unknown role {role!r} for {kind}.{action}")
            if (kind, action) not in _MIN_ROLE or action not in OVERRIDABLE:
                raise ValueError(f"{kind}.{action} has no default to change")
            table[(kind, Action(action))] = role
        object.__setattr__(self, "table", table)

    @classmethod
    def from_json(cls, text: str) -> InstancePolicy:
        """`{"defaults": {"group.invite": "member"}, "new_account_s": 3600, ...}`."""
        raw = json.loads(text)
        defaults = {tuple(key.split(".", 1)): role for key, role in raw.pop("defaults", {}).items()}
        return cls(defaults=defaults, **raw)


DEFAULT_INSTANCE = InstancePolicy()


@dataclass(slots=True)
class Subject:
    """The facts one decision may look at. chat_core fills what it holds; the rest stays default."""

    kind: str
    visibility: str
    #: The actor's conversation role; None for a non-member.
    role: str | None
    now: int = 0  # ms since the epoch: the command's time, so decisions replay the same way
    instance_role: str | None = None
    slow_mode_s: int = 0
    read_only: bool = False
    #: The actor holds a guest token; the conversation admits guests.
    guest: bool = False
    allow_guests: bool = False
    overrides: Mapping[str, str] | None = None
    muted_until: int = 0
    banned_until: int = 0
    last_sent_at: int = 0
    #: The same text as this one, sent by the actor within the flood window (this one included).
    repeats: int = 0
    #: Direct (send, edit): the peer blocks the actor. Invite: the invitee blocks the actor.
    blocked: bool = False
    #: Direct (send, edit): the actor blocks the peer.
    blocking: bool = False
    #: Invite: the invitee's ban (0: none).
    target_banned_until: int = 0
    #: Account age in ms; None when unknown (not needed for this message).
    account_age_ms: int | None = None
    links: int = 0
    mentions: int = 0
    #: Actions on a member: their role (None: not a member), and the role being given.
    target_role: str | None = None
    new_role: str | None = None
    #: The conversation's own switch for calls.
    calls_enabled: bool = True

    @property
    def staff(self) -> bool:
        return self.instance_role in STAFF_ROLES

    @property
    def rank(self) -> int:
        if self.instance_role in STAFF_ROLES:
            return STAFF_RANK
        return ROLE_RANK[self.role] if self.role is not None else -1


class Denial(NamedTuple):
    rule: str
    reason: str
    retry_after_ms: int | None = None
    #: The actor may not even learn the conversation exists (answered `not_found`).
    hidden: bool = False


class Rule(NamedTuple):
    id: str
    actions: frozenset[Action]
    denies: Callable[[Subject, InstancePolicy], bool]
    reason: Callable[[Subject, InstancePolicy], str]
    retry_after_ms: Callable[[Subject, InstancePolicy], int] | None = None


def _seconds(ms: int) -> str:
    s = max(1, -(-ms // 1000))
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{-(-s // 60)} min"
    return f"{-(-s // 3600)} h"


def _until(until: int, now: int) -> str:
    return "until further notice" if until >= FOREVER else f"for another {_seconds(until - now)}"


def _is_new(s: Subject, p: InstancePolicy) -> bool:
    return s.account_age_ms is not None and s.account_age_ms < p.new_account_s * 1000


_MODERATOR = ROLE_RANK["moderator"]
_CALL = frozenset({Action.START_CALL, Action.JOIN_CALL})

#: The attribute rules, in order; the first that fires denies. Moderators and above are exempt
#: from the spam rules (read-only, slow mode, flood) of their own conversation. An edit is writing
#: to the conversation again: every rule of a send that can apply to it applies (slow mode counts
#: edits as messages; an edit carries no mentions, and repeating a text in place is no flood).
#: Adding a reaction and pinning write to the members too: no muted member does, and no one in a
#: direct chat blocked either way. A title is text every member reads: the link rule applies.
#: Starting and joining a call are writing to the members as well.
RULES: list[Rule] = [
    Rule("calls_off", _CALL,
         lambda s, p: not p.calls or not s.calls_enabled,
         lambda s, p: "calls are off on this server" if not p.calls else "calls are off in this conversation"),
    Rule("guests", frozenset({Action.JOIN}),
         lambda s, p: s.guest and not s.allow_guests,
         lambda s, p: "this room does not admit guests"),
    Rule("guest_calls", _CALL,
         lambda s, p: s.guest and not p.guest_calls,
         lambda s, p: "guests may not take part in calls on this server"),
    Rule("banned", frozenset({Action.JOIN}),
         lambda s, p: s.banned_until > s.now,
         lambda s, p: f"you are banned from this conversation {_until(s.banned_until, s.now)}"),
    Rule("blocked", frozenset({Action.SEND, Action.EDIT_OWN, Action.REACT, Action.PIN, Action.INVITE, *_CALL}),
         lambda s, p: s.blocked,
         lambda s, p: "this user does not accept messages, calls or invitations from you"),
    Rule("blocking", frozenset({Action.SEND, Action.EDIT_OWN, Action.REACT, Action.PIN, *_CALL}),
         lambda s, p: s.blocking,
         lambda s, p: "you blocked this user; unblock them to write to them"),
    Rule("target_banned", frozenset({Action.INVITE}),
         lambda s, p: s.target_banned_until > s.now,
         lambda s, p: "this user is banned from the conversation; unban them first"),
    Rule("muted", frozenset({Action.SEND, Action.EDIT_OWN, Action.REACT, Action.PIN, *_CALL}),
         lambda s, p: s.muted_until > s.now,
         lambda s, p: f"you are muted in this conversation {_until(s.muted_until, s.now)}"),
    Rule("read_only", frozenset({Action.SEND, Action.EDIT_OWN}),
         lambda s, p: s.read_only and s.rank < _MODERATOR,
         lambda s, p: "this conversation is read-only; only moderators and above may post"),
    Rule("slow_mode", frozenset({Action.SEND, Action.EDIT_OWN}),
         lambda s, p: (s.slow_mode_s > 0 and s.rank < _MODERATOR
                       and s.now - s.last_sent_at < s.slow_mode_s * 1000),
         lambda s, p: (f"slow mode: one message every {s.slow_mode_s} s; wait "
                       f"{_seconds(s.last_sent_at + s.slow_mode_s * 1000 - s.now)} before sending again"),
         lambda s, p: s.last_sent_at + s.slow_mode_s * 1000 - s.now),
    Rule("flood", frozenset({Action.SEND}),
         lambda s, p: s.repeats >= p.flood_repeats and s.rank < _MODERATOR,
         lambda s, p: (f"the same message {s.repeats} times within {p.flood_window_s} s is a flood; "
                       f"you are muted for {_seconds(p.flood_mute_s * 1000)}")),
    Rule("new_account_links", frozenset({Action.SEND, Action.EDIT_OWN, Action.SET_INFO}),
         lambda s, p: s.links > p.new_account_max_links and _is_new(s, p),
         lambda s, p: (f"new accounts may post at most {p.new_account_max_links} links per message "
                       f"for their first {_seconds(p.new_account_s * 1000)}")),
    Rule("new_account_mentions", frozenset({Action.SEND}),
         lambda s, p: s.mentions > p.new_account_max_mentions and _is_new(s, p),
         lambda s, p: (f"new accounts may mention at most {p.new_account_max_mentions} users per message "
                       f"for their first {_seconds(p.new_account_s * 1000)}")),
    *(Rule("outranked", frozenset({action}),
           lambda s, p: s.target_role is not None and ROLE_RANK[s.target_role] >= s.rank,
           lambda s, p, verb=verb: f"you may only {verb} members below your own role")  # type: ignore[misc]
      for action, verb in _VERBS.items()),
    # Ownership moves only when its owner hands it over: not by an admin, not by instance staff
    # (the admin API and the protocol alike; staff may demote or remove, never take over).
    Rule("owner_handover", frozenset({Action.MANAGE_ROLES}),
         lambda s, p: s.new_role == "owner" and s.role != "owner",
         lambda s, p: "only the owner hands ownership to someone else"),
    Rule("role_too_high", frozenset({Action.MANAGE_ROLES}),
         lambda s, p: (s.new_role is not None and ROLE_RANK[s.new_role] >= s.rank
                       and not (s.new_role == "owner" and s.role == "owner")),
         lambda s, p: f"you may only give roles below your own; {s.new_role} is not"),
]
_RULES_FOR: dict[Action, tuple[Rule, ...]] = {a: tuple(r for r in RULES if a in r.actions) for a in Action}


def min_role(kind: str, action: Action, overrides: Mapping[str, str] | None,
             instance: InstancePolicy = DEFAULT_INSTANCE) -> str | None:
    needed = instance.table.get((kind, action))
    if needed is not None and overrides and action in OVERRIDABLE:
        return overrides.get(action, needed)
    return needed


def decide(s: Subject, action: Action, instance: InstancePolicy = DEFAULT_INSTANCE) -> Denial | None:
    """None when `s` may do `action`, else the first reason why not."""
    staff = s.instance_role in STAFF_ROLES and action in STAFF_ACTIONS
    if not staff:
        if s.role is None:
            if action is not Action.JOIN:
                if s.visibility == "public":
                    return Denial("not_member", "you are not a member of this conversation; join it first")
                return Denial("not_member", "no such conversation", hidden=True)
        elif action is not Action.JOIN:
            needed = instance.table.get((s.kind, action))  # min_role, inlined: this is the send path
            if needed is not None and s.overrides and action in OVERRIDABLE:
                needed = s.overrides.get(action, needed)
            if needed is None:
                return Denial("not_possible", f"{action.value} is not possible in a {s.kind} conversation")
            if ROLE_RANK[s.role] < ROLE_RANK[needed]:
                if s.kind == "channel" and action is Action.SEND and needed == "admin":
                    return Denial("role", "only the owner and admins post in a channel")
                return Denial("role", f"{action.value} needs the {needed} role or higher; you are {s.role}")
    for rule in _RULES_FOR[action]:
        if rule.denies(s, instance):
            retry = rule.retry_after_ms(s, instance) if rule.retry_after_ms else None
            return Denial(rule.id, rule.reason(s, instance), retry)
    return None


def raise_for(denial: Denial) -> None:
    if denial.hidden:
        raise NotFound(denial.reason)
    raise Forbidden(denial.reason, rule=denial.rule, retry_after_ms=denial.retry_after_ms)


def check(s: Subject, action: Action, instance: InstancePolicy = DEFAULT_INSTANCE) -> None:
    """`decide`, raising `Forbidden(reason, rule=...)` (or `NotFound` when hidden) on a denial."""
    denial = decide(s, action, instance)
    if denial is not None:
        raise_for(denial)


def subject(row: ConvRow, member: MemberRow | None, *, now: int = 0,
            instance_role: str | None = None) -> Subject:
    """The conversation's and the actor's part of a Subject."""
    return Subject(kind=row.kind, visibility=row.visibility, role=member.role if member else None, now=now,
                   instance_role=instance_role, slow_mode_s=row.slow_mode_s, read_only=row.read_only,
                   overrides=row.permissions or None)


def member_or_hide(row: ConvRow, member: MemberRow | None) -> MemberRow:
    """The caller's membership; a non-member learns nothing about a private conversation."""
    if member is None:
        if row.visibility == "public":
            raise Forbidden("you are not a member of this conversation; join it first", rule="not_member")
        raise NotFound("no such conversation")
    return member


def authorize(row: ConvRow, member: MemberRow | None, action: Action,
              instance: InstancePolicy = DEFAULT_INSTANCE) -> MemberRow:
    """Membership and the role floor only (what the gateway's reads can know); the member."""
    member = member_or_hide(row, member)
    check(subject(row, member), action, instance)
    return member


def may(row: ConvRow, member: MemberRow, action: Action, instance: InstancePolicy = DEFAULT_INSTANCE) -> bool:
    needed = min_role(row.kind, action, row.permissions, instance)
    return needed is not None and ROLE_RANK[member.role] >= ROLE_RANK[needed]


def adds_directly(who_may_add: str, contact: bool) -> bool:
    """Whether a conversation's creator or inviter may put this user into it at once, by the
    user's "who may add me" choice; otherwise the user gets an invitation. Blocks come first:
    a user who blocks the inviter is neither added nor invited (the `blocked` rule of INVITE)."""
    return who_may_add == "anyone" or (who_may_add == "contacts" and contact)


_LINK = re.compile(r"https?://|www\.", re.IGNORECASE)


def count_links(text: str) -> int:
    if "://" not in text and "www." not in text and "WWW." not in text:
        return 0  # the common case, without the regex
    return len(_LINK.findall(text))
