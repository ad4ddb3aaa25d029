"""user.block and user.unblock. Blocks live with the pair's direct conversation, whose single
writer decides them (the conversation need not exist). Only the blocker's own sessions hear of it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chat_core.decide import Decision, Operation, Result
from parley import events as E
from parley import frames as F
from parley.errors import BadRequest, NotFound
from parley.ids import direct_conv_id
from parley.records import Command, DropBlock, Needs, PutBlock

if TYPE_CHECKING:
    from chat_core.core import ChatCore


def _needs(core: ChatCore, cmd: Command, body: F.UserBlock | F.UserUnblock, needs: Needs) -> None:
    needs.users.add(body.user)
    needs.blocks.add((cmd.user, body.user))


def _set_block(d: Decision, other: str, on: bool) -> Result:
    cmd, facts = d.cmd, d.facts
    user = cmd.user
    if other == user:
        raise BadRequest("you cannot block yourself")
    if cmd.conv != direct_conv_id(user, other):
        raise BadRequest("a block is routed to the pair's direct conversation")
    if other not in facts.users:
        raise NotFound(f"no such user: {other}")
    pair = (user, other)
    if on == (pair in facts.blocks):
        return None
    state = d.core.convs.get(cmd.conv)
    if on:
        facts.blocks.add(pair)
        d.batch.mutations.append(PutBlock(user, other, d.now))
    else:
        facts.blocks.discard(pair)
        d.batch.mutations.append(DropBlock(user, other))
    if state is not None:  # the direct chat's send path reads its own copy
        state.blocks = {p for p in facts.blocks if set(p) == {user, other}}
    d.batch.emit(cmd.conv, E.UserBlocked(user=other) if on else E.UserUnblocked(user=other), to=[user])
    return None


def _block(d: Decision, body: F.UserBlock) -> Result:
    return _set_block(d, body.user, True)


def _unblock(d: Decision, body: F.UserUnblock) -> Result:
    return _set_block(d, body.user, False)


BLOCK = Operation(F.UserBlock, _block, _needs, reads_conv=False)
UNBLOCK = Operation(F.UserUnblock, _unblock, _needs, reads_conv=False)
