"""Commands the gateway's REST API publishes on a user's behalf (a moderator's delete, an account
deletion's tombstones): the same command log, the same Reply path and in-flight bookkeeping
(`Hub.expect_reply`) as a WebSocket session's writes. chat_core stays the single writer."""

from __future__ import annotations

import itertools
from typing import Any

import msgspec

from gateway.hub import REST_SESSION, Hub
from gateway.routing import route
from parley import frames as F
from parley import hops
from parley.errors import BadRequest, error_for_code
from parley.ports import LogProducer
from parley.records import Command, EdgeFacts

_reply = msgspec.json.Decoder(dict[str, Any])


class CommandRunner:
    """`run(...)` publishes one write as `user` and returns chat_core's ok result, or raises the
    error it answered (as the ParleyError of the same code)."""

    def __init__(self, hub: Hub, commands: LogProducer[Command]) -> None:
        self._hub = hub
        self._commands = commands
        self._rids = itertools.count(1)

    async def run(self, user: str, body: F.WriteRequest, *, instance_role: str | None = None,
                  guest: bool = False, device: str | None = None) -> dict[str, Any]:
        if isinstance(body, F.ConvCreate):
            raise ValueError("conv.create is not published from REST")
        rid = f"r{next(self._rids)}"
        body = msgspec.structs.replace(body, rid=rid)
        reply = self._hub.expect_reply(rid)
        try:
            with hops.GATEWAY_ACK.time():
                await self._commands.publish(Command(route(user, body), user, self._hub.gateway_id, REST_SESSION,
                                                     body, instance_role, guest, hops.start(),
                                                     None if device is None else EdgeFacts(device=device)))
        except BaseException:
            self._hub.forget_reply(rid)
            raise
        frame = _reply.decode(await reply)
        if frame.get("op") == "error":
            retry = frame.get("retry_after_ms")
            raise error_for_code(str(frame.get("code")), str(frame.get("message", "")),
                                 retry if isinstance(retry, int) else None)
        frame.pop("op", None)
        frame.pop("rid", None)
        return frame

    async def run_op(self, user: str, op: str, fields: dict[str, Any], *, instance_role: str | None = None,
                     guest: bool = False, device: str | None = None) -> dict[str, Any]:
        """Publish write `op` built from `fields` (validated by the protocol's own frame types)."""
        try:
            body = msgspec.convert({"op": op, "rid": "pending", **fields}, F.WriteRequest)
        except msgspec.ValidationError as exc:
            raise BadRequest(f"not a valid {op}: {exc}") from None
        return await self.run(user, body, instance_role=instance_role, guest=guest, device=device)

