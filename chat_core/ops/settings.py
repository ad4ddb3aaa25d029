"""conv.update: a conversation's settings (title, topic, visibility, history, password, slow mode,
read-only, guests, permission overrides), announced to every member in their own view and audited.

The topic rides on conv.update rather than an op of its own: it is one more setting of the same
conversation, needing the same permission (`set_info`) and announced the same way (`conv.updated`)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import msgspec

from chat_core.decide import SYSTEM, Decision, Operation, Result, needs_age_for_links
from moderation import policy
from moderation.policy import Action
from parley import events as E
from parley import frames as F
from parley.errors import BadRequest
from parley.frames import UNSET
from parley.profiles import one_line_text
from parley.records import Command, Needs, PutMember, UpdateConv

if TYPE_CHECKING:
    from chat_core.core import ChatCore


#: The settings a conversation's row takes as given (permissions and password are converted, and
#: the topic is made one line).
_PLAIN = ("title", "topic", "visibility", "history", "slow_mode_s", "read_only", "allow_guests")
#: The settings that are text every member (and every invitee) reads: screened like messages.
_READ_BY_ALL = ("title", "topic")


def _update(d: Decision, body: F.ConvUpdate) -> Result:
    cmd, batch = d.cmd, d.batch
    state = d.conv()
    row = state.row
    s = d.subject(state)
    given = {name: value for name in _PLAIN if (value := getattr(body, name)) is not UNSET}
    if "topic" in given:  # white space runs as one space; empty (or only white space) clears it
        given["topic"] = one_line_text(body.topic or None, "topic")
    if isinstance(body.password, str):  # hashed at the gateway: a plaintext here was not (an older gateway)
        raise BadRequest("the password could not be set; retry")
    # A new password arrives as its hash (the gateway hashed it), a cleared one as null.
    new_hash = cmd.edge.password_hash if cmd.edge else None
    if given or body.password is not UNSET or new_hash is not None:
        d.check(s, Action.SET_INFO)
    if body.permissions is not UNSET:
        d.check(s, Action.SET_PERMISSIONS)
        impossible = [p for p in body.permissions
                      if policy.min_role(row.kind, Action(p), None, d.core.instance) is None]
        if impossible:
            raise BadRequest(f"{impossible[0]} is not possible in a {row.kind} conversation")
    new = msgspec.structs.replace(row, **given)
    changed: dict[str, str | int | bool | None] = {}
    if body.permissions is not UNSET:
        new.permissions = {str(k): v for k, v in body.permissions.items()}
    if new_hash is not None:
        if new.visibility != "public":
            raise BadRequest("only public conversations take a password")
        new.password_hash = new_hash
        changed["password"] = "set"
    elif body.password is None:
        new.password_hash = None
    if new.visibility != "public" and new.password_hash is not None:
        new.password_hash = None  # a private conversation is reached by invitation only
    for name in _READ_BY_ALL:
        text = getattr(new, name)
        if isinstance(text, str) and text != getattr(row, name):
            flag = d.check_text(s, Action.SET_INFO, text, "conv")
            if flag is not None:
                d.audit(SYSTEM, "conv.flag", row.id, flag, sender=cmd.user)
    for name in _PLAIN:
        if getattr(new, name) != getattr(row, name):
            changed[name] = getattr(new, name)
    if new.permissions != row.permissions:
        changed["permissions"] = json.dumps(new.permissions, sort_keys=True)
    if row.password_hash is not None and new.password_hash is None:
        changed["password"] = "cleared"
    if not changed:
        return E.ConvResult(rid=d.rid, conv=state.view(cmd.user))
    if new.history == "full" and row.history != "full":
        # From now on every member sees the whole history, not only since they joined.
        for member in state.members.values():
            if member.visible_from != 1:
                member.visible_from = 1
                batch.mutations.append(PutMember(member))
    state.row = new
    batch.mutations.append(UpdateConv(new))
    d.audit_moderator("conv.update", row.id, None, **changed)
    for user in state.members:
        batch.emit(row.id, E.ConvUpdated(conv=state.view(user)), to=[user])
    return E.ConvResult(rid=d.rid, conv=state.view(cmd.user))


def _update_needs(core: ChatCore, cmd: Command, body: F.ConvUpdate, needs: Needs) -> None:
    for name in _READ_BY_ALL:
        text = getattr(body, name)
        if isinstance(text, str):
            needs_age_for_links(core, cmd, text, needs)


UPDATE = Operation(F.ConvUpdate, _update, _update_needs)
