"""Which conversation's writer decides a write: the log key of its command. Both of the gateway's
write paths (a WebSocket session's, and the REST command runner's) route through here."""

from __future__ import annotations

from parley import frames as F
from parley.errors import BadRequest, NotFound
from parley.ids import conv_of_call, direct_conv_id, new_conv_id


def route(user: str, req: F.WriteRequest) -> str:
    """The conversation a write belongs to, i.e. its log key and single writer. A new direct chat
    and a block are about a pair: both go to the pair's derived direct conversation; a call's
    request goes to the conversation its id carries."""
    if isinstance(req, F.ConvCreate):
        return direct_conv_id(user, req.members[0]) if req.kind == "direct" else new_conv_id()
    if isinstance(req, (F.UserBlock, F.UserUnblock)):
        return direct_conv_id(user, req.user)
    if isinstance(req, (F.CallJoin, F.CallDecline, F.CallLeave, F.CallEnd, F.CallRemove)):
        conv = conv_of_call(req.call)
        if not conv:
            raise NotFound("no such call")
        return conv
    if isinstance(req, (F.CallRingTimeout, F.CallReconcile)):
        raise BadRequest("only the calls role sends this")
    return req.conv
