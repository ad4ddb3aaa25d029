"""conv.update: a conversation's settings (title, visibility, history, password, slow mode,
read-only, guests, permission overrides), announced to every member in their own view and audited."""

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
from parley.records import Command, Needs, PutMember, UpdateConv

if TYPE_CHECKING:
    from chat_core.core import ChatCore


#: The settings a conversation's row takes as given (permissions and password are converted).
_PLAIN = ("title", "visibility", "history", "slow_mode_s", "read_only", "allow_guests")


def _update(d: Decision, body: F.ConvUpdate) -> Result:
    cmd, batch = d.cmd, d.batch
    state = d.conv()
    row = state.row
    s = d.subject(state)
    given = {name: value for name in _PLAIN if (value := getattr(body, name)) is not UNSET}
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
    if isinstance(body.title, str) and body.title != row.title:  # text every member reads
        flag = d.check_text(s, Action.SET_INFO, body.title, "conv")
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
    if isinstance(body.title, str):
        needs_age_for_links(core, cmd, body.title, needs)


UPDATE = Operation(F.ConvUpdate, _update, _update_needs)
