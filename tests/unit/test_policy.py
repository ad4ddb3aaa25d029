"""The permission table of the spine, generated from one declaration."""

from __future__ import annotations

import itertools

import pytest

from moderation import policy
from moderation.policy import Action
from parley.errors import Forbidden, NotFound
from parley.records import ConvRow, MemberRow

ROLES = ["owner", "admin", "moderator", "member"]
KINDS = ["direct", "group", "channel"]

#: (kind, action) -> roles allowed; anything absent is denied. The one table the test is made of.
ALLOWED = {
    **{(k, Action.READ): set(ROLES) for k in KINDS},
    ("direct", Action.SEND): set(ROLES),
    ("group", Action.SEND): set(ROLES),
    ("channel", Action.SEND): {"owner", "admin"},
    ("group", Action.INVITE): {"owner", "admin"},
    ("channel", Action.INVITE): {"owner", "admin"},
    ("group", Action.DELETE_ANY): {"owner", "admin", "moderator"},
    ("channel", Action.DELETE_ANY): {"owner", "admin", "moderator"},
}


def row(kind: str, visibility: str = "private") -> ConvRow:
    return ConvRow(id="c", kind=kind, title=None, visibility=visibility, password_hash=None, history="joined",
                   owner="o", created_at=0)


def member(role: str) -> MemberRow:
    return MemberRow(conv="c", user="u", role=role, visible_from=1, read_seq=0, joined_at=0)


@pytest.mark.parametrize("kind, action, role", list(itertools.product(KINDS, list(Action), ROLES)))
def test_permission_matrix(kind, action, role):
    allowed = role in ALLOWED.get((kind, action), set())
    if allowed:
        assert policy.authorize(row(kind), member(role), action).role == role
    else:
        with pytest.raises(Forbidden) as exc:
            policy.authorize(row(kind), member(role), action)
        assert exc.value.message  # a reason a person can read
    assert policy.may(row(kind), member(role), action) is allowed


@pytest.mark.parametrize("action", list(Action))
def test_non_members_learn_nothing_of_private_conversations(action):
    with pytest.raises(NotFound):
        policy.authorize(row("group"), None, action)
    with pytest.raises(Forbidden, match="join"):
        policy.authorize(row("group", visibility="public"), None, action)
