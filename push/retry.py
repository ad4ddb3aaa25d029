"""Sending with retries: a provider's temporary refusals are sent again after an exponential
backoff with jitter, never sooner than its Retry-After, a bounded number of times; what is
still refused then is handed back as dead letters for `parley.push.dead`.

Built on tenacity: maintained, asyncio-native (`AsyncRetrying` with an injectable sleep, so
tests wait for nothing), and its wait strategies compose, which is what honouring Retry-After
on top of a jittered backoff takes. (`backoff` has had no release since 2022.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import msgspec
from tenacity import AsyncRetrying, RetryCallState, retry_if_result, stop_after_attempt
from tenacity.wait import wait_base, wait_exponential_jitter

from push.notification import Failed, Prune, PushRequest, Retry, Sent
from push.providers import Pushkin


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    #: Sends in all, the first one included.
    attempts: int = 5
    #: The first backoff; each next one doubles, plus up to this much jitter.
    base_s: float = 1.0
    #: The longest wait between two sends. A Retry-After asking for longer is not waited out
    #: (the worker would hold its batch that long): the request is dead-lettered at once.
    max_delay_s: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"a push is sent at least once, not {self.attempts} times")


class DeadLetter(msgspec.Struct, frozen=True):
    """A push that was still refused after its last attempt; its `reason` is the last refusal's."""

    request: PushRequest
    reason: str
    attempts: int

    @property
    def conv(self) -> str:
        """The key of `parley.push.dead` (a conversation-keyed log, like the others)."""
        return self.request.conv

    @property
    def trace(self) -> str | None:
        return self.request.trace


@dataclass
class Delivery:
    """What became of a list of pushes once retries are over."""

    sent: list[Sent] = field(default_factory=list)
    pruned: list[Prune] = field(default_factory=list)
    failed: list[Failed] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    #: Pushes sent again (one per push per extra attempt).
    retried: int = 0

    def add(self, other: Delivery) -> None:
        self.sent += other.sent
        self.pruned += other.pruned
        self.failed += other.failed
        self.dead += other.dead
        self.retried += other.retried


class _WaitRetryAfter(wait_base):
    """The jittered backoff, or the longest Retry-After of the pushes about to be sent again."""

    def __init__(self, backoff: wait_base) -> None:
        self._backoff = backoff

    def __call__(self, retry_state: RetryCallState) -> float:
        assert retry_state.outcome is not None
        pending: list[Retry] = retry_state.outcome.result()
        asked = max((r.after_s for r in pending if r.after_s is not None), default=0.0)
        return max(self._backoff(retry_state), asked)


async def send_with_retries(pushkin: Pushkin, requests: Sequence[PushRequest], policy: RetryPolicy,
                            *, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> Delivery:
    """Sends `requests`, then again the ones refused for now, until none is or the attempts
    run out. Every request ends in exactly one list of the answer."""
    delivery = Delivery()
    pending: list[PushRequest] = list(requests)
    attempts = 0

    async def attempt() -> list[Retry]:
        nonlocal pending, attempts
        attempts += 1
        if attempts > 1:
            delivery.retried += len(pending)
        refused: list[Retry] = []
        for outcome in await pushkin.send(pending):
            if isinstance(outcome, Sent):
                delivery.sent.append(outcome)
            elif isinstance(outcome, Prune):
                delivery.pruned.append(outcome)
            elif isinstance(outcome, Failed):
                delivery.failed.append(outcome)
            elif outcome.after_s is not None and outcome.after_s > policy.max_delay_s:
                delivery.dead.append(DeadLetter(outcome.request, outcome.reason, attempts))
            else:
                refused.append(outcome)
        pending = [r.request for r in refused]
        return refused

    last_refused: list[Retry] = await AsyncRetrying(
        stop=stop_after_attempt(policy.attempts),
        wait=_WaitRetryAfter(wait_exponential_jitter(multiplier=policy.base_s, max=policy.max_delay_s,
                                                     jitter=policy.base_s)),
        retry=retry_if_result(bool),
        retry_error_callback=_last_refusals,  # out of attempts: hand them back, raise nothing
        sleep=sleep,
    )(attempt)
    delivery.dead.extend(DeadLetter(r.request, r.reason, attempts) for r in last_refused)
    return delivery


def _last_refusals(state: RetryCallState) -> list[Retry]:
    assert state.outcome is not None
    result: list[Retry] = state.outcome.result()
    return result
