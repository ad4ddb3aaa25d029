"""Every request's per-user rate limit at the gateway, before it costs anything further (a command
on the log, a store read): one `Limiter` per family of ops (parley.limits.RATES), looked up by
the request's type. `hello`, `ping` and `received` have none: one opens a session (sessions per
user are capped), one is answered from memory, and receipts are gathered per conversation and
user into one command per interval (gateway/received.py), whatever their number."""

from __future__ import annotations

from typing import get_args

from limits.aio.storage import Storage

from parley import frames as F
from parley.limits import RATES, Limits
from parley.ratelimit import Limiter

#: The requests no rate limit applies to.
UNLIMITED = (F.Hello, F.Ping, F.Received)


class RequestLimits:
    """Guests send under their own, stricter limit; every other family is the same for them."""

    def __init__(self, limits: Limits, storage: Storage | None = None) -> None:
        families: dict[str, Limiter] = {}
        self._member: dict[type, Limiter] = {}
        for request in get_args(F.AnyRequest):
            if request in UNLIMITED:
                continue
            name = RATES[request.__struct_config__.tag]
            if name not in families:
                families[name] = Limiter(name, *limits.rate(name), storage)
            self._member[request] = families[name]
        self._guest = {**self._member, F.Send: Limiter("guest send", limits.guest_send_burst,
                                                        limits.guest_send_window_s, storage)}

    async def hit(self, user: str, guest: bool, req: F.AnyRequest | F.WriteRequest) -> None:
        """Count `req` against `user`'s limit of its family; RateLimited past it. (A write a client
        sent: the calls role's own writes are in WriteRequest only and never come through here.)"""
        await (self._guest if guest else self._member)[type(req)].hit(user)
