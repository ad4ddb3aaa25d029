"""Who may do what in a conversation. Pure: takes state, returns nothing or raises with a reason.

Roles rank owner > admin > moderator > member; in a channel, plain members are subscribers.
The moderation issue grows this into the full RBAC/ABAC engine; chat_core calls only `authorize`.
"""

from __future__ import annotations

from enum import StrEnum

from parley.errors import Forbidden, NotFound
from parley.records import ConvRow, MemberRow

ROLE_RANK = {"member": 0, "moderator": 1, "admin": 2, "owner": 3}


class Action(StrEnum):
    READ = "read"  # history, receipts, reactions: any member
    SEND = "send"
    INVITE = "invite"
    DELETE_ANY = "delete_any"


#: The lowest role allowed each action, per conversation kind.
_MIN_ROLE: dict[tuple[str, Action], str] = {
    **{(kind, Action.READ): "member" for kind in ("direct", "group", "channel")},
    ("direct", Action.SEND): "member",
    ("group", Action.SEND): "member",
    ("channel", Action.SEND): "admin",
    ("group", Action.INVITE): "admin",
    ("channel", Action.INVITE): "admin",
    ("group", Action.DELETE_ANY): "moderator",
    ("channel", Action.DELETE_ANY): "moderator",
}

_HIDDEN = "no such conversation"


def member_or_hide(row: ConvRow, member: MemberRow | None) -> MemberRow:
    """The caller's membership; a non-member learns nothing about a private conversation."""
    if member is None:
        if row.visibility == "public":
            raise Forbidden("you are not a member of this conversation; join it first")
        raise NotFound(_HIDDEN)
    return member


def authorize(row: ConvRow, member: MemberRow | None, action: Action) -> MemberRow:
    member = member_or_hide(row, member)
    needed = _MIN_ROLE.get((row.kind, action))
    if needed is None:
        raise Forbidden(f"{action.value} is not possible in a {row.kind} conversation")
    if ROLE_RANK[member.role] < ROLE_RANK[needed]:
        if row.kind == "channel" and action is Action.SEND:
            raise Forbidden("only the owner and admins post in a channel")
        raise Forbidden(f"{action.value} needs the {needed} role or higher; you are {member.role}")
    return member


def may(row: ConvRow, member: MemberRow, action: Action) -> bool:
    needed = _MIN_ROLE.get((row.kind, action))
    return needed is not None and ROLE_RANK[member.role] >= ROLE_RANK[needed]
