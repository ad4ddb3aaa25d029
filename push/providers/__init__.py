"""Push providers: one client ("pushkin", after Sygnal) per provider behind one small interface.

`fcm` and `apns` send; `errors` is the one place that turns each provider's answers into
outcomes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from push.notification import Outcome, PushRequest


class Pushkin(Protocol):
    """One provider's client. `send` answers one outcome per request, in the order given, and
    raises only for a bug: every provider or transport failure is an outcome."""

    async def send(self, requests: Sequence[PushRequest]) -> list[Outcome]: ...

    async def close(self) -> None: ...
