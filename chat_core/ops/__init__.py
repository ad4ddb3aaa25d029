"""The write requests chat_core decides, one module per family, and the one table that maps each
request type to its operation (its prefetch and its decision, side by side in its module).

Adding an operation: its request type in parley/frames.py (and in `WriteRequest`), its
`Operation` in the module of its family, and one line here.
"""

from __future__ import annotations

from typing import Any

from chat_core.decide import Operation
from chat_core.ops import blocks, calls, member_actions, membership, messages, settings

OPERATIONS: dict[type, Operation[Any]] = {op.request: op for op in (
    messages.SEND, messages.EDIT, messages.DELETE, messages.REACT, messages.READ, messages.PIN, messages.RECEIVED,
    membership.CREATE, membership.JOIN, membership.LEAVE, membership.INVITE, membership.ACCEPT, membership.DECLINE,
    settings.UPDATE,
    member_actions.ROLE, member_actions.MUTE, member_actions.UNMUTE, member_actions.KICK, member_actions.BAN,
    member_actions.UNBAN,
    blocks.BLOCK, blocks.UNBLOCK,
    calls.START, calls.JOIN, calls.DECLINE, calls.LEAVE, calls.END, calls.SETTINGS, calls.RING_TIMEOUT, calls.RECONCILE,
    calls.REMOVE,
)}
