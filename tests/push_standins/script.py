"""What a stand-in answers for a token: by default it accepts; a script can make it refuse with
a given status and reason (for n sends, or always), or never answer."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field


@dataclass
class Planned:
    """One planned answer. `status` None: never answer (the send hangs)."""

    status: int | None
    reason: str | None = None
    retry_after: str | None = None
    #: How many more sends get it; None: every one.
    times: int | None = None


@dataclass
class Script:
    _plans: dict[str, list[Planned]] = field(default_factory=lambda: defaultdict(list))

    def fail(self, token: str, status: int, reason: str | None = None, *, times: int | None = None,
             retry_after: str | None = None) -> None:
        """Refuse sends to `token` with `status` and `reason` (`times` sends, or every one)."""
        self._plans[token].append(Planned(status, reason, retry_after, times))

    def hang(self, token: str, *, times: int | None = None) -> None:
        """Never answer sends to `token` (`times` sends, or every one)."""
        self._plans[token].append(Planned(None, times=times))

    def planned(self, token: str) -> int:
        """How many plans for `token` are still to be used (a plan of `times` sends is used up
        by its last)."""
        return len(self._plans.get(token, ()))

    def next(self, token: str) -> Planned | None:
        """The answer planned for the next send to `token`; None: accept it."""
        plans = self._plans.get(token)
        if not plans:
            return None
        plan = plans[0]
        if plan.times is not None:
            plan.times -= 1
            if plan.times == 0:
                plans.pop(0)
        return plan
