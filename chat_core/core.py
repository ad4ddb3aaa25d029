"""The single writer's state and its batch cycle: needs -> absorb -> begin -> handle -> committed
(or forget).

`ChatCore` holds the state of the conversations it owns (rows, members, heads, mutes, bans,
blocks) and the caches a decision reads (idempotency keys, account ages). It turns each command
into a reply frame plus mutations and events collected in a `Batch`, through the operation that
chat_core/ops/ registers for the command's request type. It does no I/O: the worker prefetches
what a batch needs (`needs` -> store -> `absorb`) and writes the batch. Every permission is
decided by moderation's policy core from facts held here. Every check runs before any state
changes, so a rejected command leaves no trace; the one exception is deliberate: a flood is
refused *and* mutes its sender (an audited automatic action).
"""

from __future__ import annotations

from collections import OrderedDict

from chat_core.decide import Batch, Decision
from chat_core.ops import OPERATIONS
from chat_core.ops.calls import CallDefaults
from moderation.filters import AllowAll, ContentFilter
from moderation.policy import DEFAULT_INSTANCE, InstancePolicy
from parley import metrics
from parley.errors import ParleyError
from parley.events import Ok
from parley.frames import encode, error_frame
from parley.limits import Limits
from parley.records import Command, ConvState, Facts, IdemKey, Needs


DEFAULT_LIMITS = Limits()


class ChatCore:
    """The state and rules of the conversations this writer owns."""

    def __init__(self, max_convs: int = 50_000, max_idem: int = 200_000, *,
                 instance: InstancePolicy = DEFAULT_INSTANCE, content_filter: ContentFilter | None = None,
                 limits: Limits = DEFAULT_LIMITS, enforce: bool = True, calls: CallDefaults = CallDefaults()) -> None:
        self.convs: OrderedDict[str, ConvState] = OrderedDict()
        #: (seq, ts) of stored sends by idempotency key.
        self.idem: OrderedDict[IdemKey, tuple[int, int]] = OrderedDict()
        #: users.created_at never changes: cached for the account-age rules.
        self.created_at: OrderedDict[str, int] = OrderedDict()
        self._max_convs = max_convs
        self._max_idem = max_idem
        self.instance = instance
        #: The caps a writer applies (reactions and edits per message).
        self.limits = limits
        #: None for AllowAll: the send path skips the call altogether.
        self.content_filter: ContentFilter | None = None if content_filter is None or isinstance(
            content_filter, AllowAll) else content_filter
        #: False only to measure the policy's cost (loadtests.policy_bench): sends skip every rule.
        self.enforce = enforce
        #: Conversations up to this size (not channels) tell their members each `delivered`.
        self.receipts_max_members = limits.receipts_max_members
        self.calls = calls

    def needs(self, cmds: list[Command]) -> Needs:
        """What the store must read before `handle` can decide these commands."""
        needs = Needs()
        for cmd in cmds:
            body = cmd.body
            op = OPERATIONS[type(body)]
            if op.reads_conv and cmd.conv not in self.convs:
                needs.convs.add(cmd.conv)
            if op.needs is not None:
                op.needs(self, cmd, body, needs)
        return needs

    def absorb(self, facts: Facts) -> None:
        for conv_id, state in facts.convs.items():
            self.convs[conv_id] = state
        self.created_at.update(facts.created_at)
        while len(self.created_at) > self._max_idem:
            self.created_at.popitem(last=False)

    def forget(self) -> None:
        """Drop all cached state (after a failed write: the store is the truth)."""
        self.convs.clear()
        self.idem.clear()

    def committed(self, batch: Batch) -> None:
        """The batch is durable: remember its idempotency keys and bound the caches."""
        self.idem.update(batch.assigned)
        while len(self.idem) > self._max_idem:
            self.idem.popitem(last=False)
        while len(self.convs) > self._max_convs:
            self.convs.popitem(last=False)

    def begin(self) -> Batch:
        return Batch()

    def handle(self, cmd: Command, facts: Facts, now_ms: int, batch: Batch) -> bytes:
        """Decide one command: the reply frame; effects go into `batch`."""
        body = cmd.body
        decide = OPERATIONS[type(body)].decide
        try:
            result = decide(Decision(self, cmd, facts, now_ms, batch), body)
        except ParleyError as err:
            metrics.answered(body, err)
            return error_frame(err, body.rid)
        metrics.answered(body)
        return encode(Ok(rid=body.rid) if result is None else result)
