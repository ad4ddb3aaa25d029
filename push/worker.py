"""The push worker: consumes `parley.push`, sends each batch through the providers, and
settles it before committing: pruned devices deleted, pushes refused past the last retry
written to `parley.push.dead`, everything settled remembered as sent (push/marks.py). A batch
is committed only once settled, so a crash loses nothing; a batch consumed again skips what
was settled, so it sends no duplicate (but for a push answered by its provider in the moment
between the answer and its mark).

Before sending: a batch keeps one push per device, conversation and kind (the newest seq: a
later notification of a conversation replaces the earlier one on the phone anyway), and a
device past `per_minute` message pushes in the last minute gets no more until the minute has
passed (calls and clears always go).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence

from prometheus_client import Counter, Histogram

from parley.backoff import wait_out
from parley.errors import Unavailable
from parley.hops import BUCKETS
from parley.ports import DeviceStore, LogConsumer, LogProducer
from push.marks import SentMarks
from push.notification import PushRequest
from push.providers import Pushkin
from push.retry import DeadLetter, Delivery, RetryPolicy
from push.sender import PROVIDERS, Provider, send_all

log = logging.getLogger(__name__)

SENT = Counter("parley_push_sent", "Pushes a provider accepted, by provider.", ["provider"])
FAILED = Counter("parley_push_failed", "Pushes refused for good, by provider and error code.", ["provider", "code"])
RETRIED = Counter("parley_push_retried", "Pushes sent again after a temporary refusal.")
DEAD_LETTERED = Counter("parley_push_dead_lettered", "Pushes still refused after the last retry.", ["provider"])
PRUNED = Counter("parley_push_devices_pruned", "Devices deleted because their provider called the token dead.",
                 ["provider", "code"])
RATE_LIMITED = Counter("parley_push_rate_limited", "Message pushes dropped by the per-device rate limit.")
DUPLICATES = Counter("parley_push_duplicates_skipped", "Pushes consumed again after they were settled.")
DECISION_TO_PROVIDER = Histogram("parley_push_decision_to_provider_seconds",
                                 "From the push decision to the provider's answer.", buckets=BUCKETS)
STORED_TO_PROVIDER = Histogram("parley_push_stored_to_provider_seconds",
                               "From the message being stored to the provider's answer.", buckets=BUCKETS)

#: The rate limit's window.
MINUTE_S = 60.0
#: Kinds the rate limit never drops: a ring or a cancel is always wanted, a clear is rare.
UNLIMITED_KINDS = frozenset({"call", "call_cancel", "clear"})


def collapse(requests: Sequence[PushRequest]) -> list[PushRequest]:
    """One request per device, conversation, kind (and call): the one with the highest seq."""
    newest: dict[tuple[str, str, str, str | None], PushRequest] = {}
    for request in requests:
        key = (request.device_id, request.conv, request.kind, request.call_id)
        if key not in newest or request.seq > newest[key].seq:
            newest[key] = request
    return list(newest.values())


class DeviceRateLimit:
    """At most `per_minute` message pushes per device in any 60 s."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._per_minute = per_minute
        self._clock = clock
        self._sent: dict[str, deque[float]] = defaultdict(deque)

    def admit(self, requests: Sequence[PushRequest]) -> list[PushRequest]:
        now = self._clock()
        admitted: list[PushRequest] = []
        for request in requests:
            if request.kind in UNLIMITED_KINDS:
                admitted.append(request)
                continue
            times = self._sent[request.device_id]
            while times and times[0] <= now - MINUTE_S:
                times.popleft()
            if len(times) < self._per_minute:
                times.append(now)
                admitted.append(request)
        # Devices with nothing in the window are forgotten, so the map does not grow forever.
        for device in [d for d, t in self._sent.items() if not t or t[-1] <= now - MINUTE_S]:
            del self._sent[device]
        return admitted


class LoggedDeadLetters:
    """The dead letters of `parley dev`, which has no log to keep them: logged, one line each."""

    async def publish(self, item: DeadLetter) -> None:
        await self.publish_many((item,))

    async def publish_many(self, items: Sequence[DeadLetter]) -> None:
        for letter in items:
            log.warning("push to device %s of %s dead after %d attempts: %s", letter.request.device_id,
                        letter.request.user, letter.attempts, letter.reason)


class PushWorker:
    def __init__(self, source: LogConsumer[PushRequest], pushkins: Mapping[Provider, Pushkin], policy: RetryPolicy,
                 devices: DeviceStore, dead: LogProducer[DeadLetter], marks: SentMarks, limit: DeviceRateLimit, *,
                 batch_max: int = 500, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._source = source
        self._pushkins = pushkins
        self._policy = policy
        self._devices = devices
        self._dead = dead
        self._marks = marks
        self._limit = limit
        self._batch_max = batch_max
        self._sleep = sleep

    async def run(self) -> None:
        while True:
            try:
                await self.settle(await self._source.next_batch(self._batch_max))
                await self._source.commit()
            except Unavailable as err:  # the log, the store or Redis is away: the batch comes again
                await wait_out(err, log, "push")

    async def settle(self, batch: Sequence[PushRequest]) -> Delivery:
        """Sends what of `batch` was not settled before and settles it (see the module)."""
        done = await self._marks.sent([r.dedup_key() for r in batch])
        fresh = [r for r, was in zip(batch, done) if not was]
        DUPLICATES.inc(len(batch) - len(fresh))
        wanted = collapse(fresh)
        admitted = self._limit.admit(wanted)
        RATE_LIMITED.inc(len(wanted) - len(admitted))
        delivery = await send_all(self._pushkins, admitted, self._policy, sleep=self._sleep)
        now_ms = time.time() * 1000
        for sent in delivery.sent:
            SENT.labels(PROVIDERS[sent.request.platform]).inc()
            if sent.request.decided_ms is not None:
                DECISION_TO_PROVIDER.observe((now_ms - sent.request.decided_ms) / 1000)
            if sent.request.stored_ms is not None:
                STORED_TO_PROVIDER.observe((now_ms - sent.request.stored_ms) / 1000)
        for failed in delivery.failed:
            FAILED.labels(PROVIDERS[failed.request.platform], failed.reason).inc()
        for pruned in delivery.pruned:
            await self._devices.delete_device(pruned.request.user, pruned.request.device_id)
            PRUNED.labels(PROVIDERS[pruned.request.platform], pruned.reason).inc()
        RETRIED.inc(delivery.retried)
        # Settled now: all but the dead letters, including what was collapsed or rate limited
        # away. Marked before the dead letters are written, so a dead-letter log that is away
        # (the batch comes again) costs a second try of the dead letters only.
        dead = {d.request.dedup_key() for d in delivery.dead}
        await self._marks.mark([k for k in (r.dedup_key() for r in fresh) if k not in dead])
        if delivery.dead:
            await self._dead.publish_many(delivery.dead)
            await self._marks.mark(list(dead))
            for letter in delivery.dead:
                DEAD_LETTERED.labels(PROVIDERS[letter.request.platform]).inc()
        return delivery
