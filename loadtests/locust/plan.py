"""Who is who in a Locust run: the accounts (from `parley admin loadtest-users`), the
conversations made for the scenario (prepare.py), and the accounts each worker runs.

A conversation's members all go to one worker, so the worker that acks a group message knows
every member that should get it (ledger.py); a channel's subscribers are the exception: they
are dealt one by one across workers, and the master adds up their deliveries. Values in, values
out, plus reading and writing the plan file (JSON).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import msgspec

Role = Literal["hold", "chat", "receive", "post", "subscribe"]
ConvKind = Literal["group", "channel"]


class Account(msgspec.Struct, frozen=True):
    user_id: str
    username: str
    token: str


class Conv(msgspec.Struct, frozen=True):
    id: str
    kind: ConvKind
    #: Account indexes; the senders are among them.
    members: list[int]
    senders: list[int]
    #: Seconds between two sends of one sender.
    send_every_s: float


class Plan(msgspec.Struct):
    scenario: str
    accounts: list[Account]
    convs: list[Conv] = []
    #: worker index -> the account indexes it runs, in the order its users start.
    workers: list[list[int]] = []

    def accounts_of(self, worker: int) -> list[int]:
        """A worker's accounts (Locust's worker index; 0 in a run without workers)."""
        if worker >= len(self.workers):
            raise ValueError(f"the plan has accounts for {len(self.workers)} workers, not worker {worker}")
        return self.workers[worker]


def roles(plan: Plan) -> dict[int, tuple[Role, Conv]]:
    """Account index -> its role and conversation; accounts in none only hold a session."""
    found: dict[int, tuple[Role, Conv]] = {}
    for conv in plan.convs:
        senders = set(conv.senders)
        sending: Role = "chat" if conv.kind == "group" else "post"
        listening: Role = "receive" if conv.kind == "group" else "subscribe"
        for i in conv.members:
            found[i] = (sending if i in senders else listening, conv)
    return found


def deal(units: list[list[int]], workers: int) -> list[list[int]]:
    """Units (a group's members together, or one account) to workers, biggest first, each to the
    worker with the fewest accounts so far: the workers' loads differ by at most one unit."""
    if workers < 1:
        raise ValueError("at least one worker")
    dealt: list[list[int]] = [[] for _ in range(workers)]
    for unit in sorted(units, key=len, reverse=True):
        min(dealt, key=len).extend(unit)
    return dealt


def units_of(accounts: int, convs: list[Conv]) -> list[list[int]]:
    """Each group's members as one unit; every other account (channel members too) alone."""
    grouped = [conv.members for conv in convs if conv.kind == "group"]
    taken = {i for unit in grouped for i in unit}
    return grouped + [[i] for i in range(accounts) if i not in taken]


@dataclass
class Layout:
    """What prepare.py makes: groups of `group_size` consecutive accounts in which every member
    sends (the first `chatters` accounts), then one channel of the next `subscribers` accounts
    with one poster; everyone else holds a session."""

    chatters: int = 0
    group_size: int = 50
    #: sends/s of all chatters together (0: none)
    chat_rate: float = 0.0
    subscribers: int = 0
    #: posts/s to the channel
    post_rate: float = 0.0
    groups: list[list[int]] = field(init=False)
    channel: list[int] = field(init=False)

    def __post_init__(self) -> None:
        self.groups = [list(range(i, min(i + self.group_size, self.chatters)))
                       for i in range(0, self.chatters, self.group_size)]
        self.channel = list(range(self.chatters, self.chatters + self.subscribers + 1)) if self.subscribers else []

    def needs(self) -> int:
        return self.chatters + len(self.channel)

    def chat_every_s(self) -> float:
        return self.chatters / self.chat_rate if self.chat_rate else 0.0


def read_accounts(path: Path) -> list[Account]:
    return msgspec.json.decode(path.read_bytes(), type=list[Account])


def read_plan(path: Path) -> Plan:
    return msgspec.json.decode(path.read_bytes(), type=Plan)


def write_plan(plan: Plan, path: Path) -> None:
    path.write_bytes(msgspec.json.encode(plan))
    path.chmod(0o600)  # it holds the tokens


def summary(plan: Plan) -> dict[str, object]:
    """The plan without the tokens, for the results folder."""
    return {"scenario": plan.scenario, "accounts": len(plan.accounts),
            "workers": [len(w) for w in plan.workers],
            "convs": [{"id": c.id, "kind": c.kind, "members": len(c.members), "senders": len(c.senders),
                       "send_every_s": c.send_every_s} for c in plan.convs]}

