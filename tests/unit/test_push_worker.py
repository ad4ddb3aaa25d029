"""The push worker (push/worker.py): settling a batch (prune, dead letters, marks), no
duplicate when a batch comes again, collapse per conversation, the per-device rate limit."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from parley.adapters.inprocess import InProcessLog
from parley.errors import Unavailable
from push.marks import MemorySentMarks
from push.notification import Outcome, Prune, PushKind, PushRequest, Retry, Sent
from push.retry import DeadLetter, RetryPolicy
from push.worker import DeviceRateLimit, PushWorker, collapse
from tests.push_standins.fixtures import Sleeps


def req(device: str, seq: int = 1, conv: str = "c", kind: PushKind = "message") -> PushRequest:
    return PushRequest(user="u", device_id=device, platform="fcm", token="t-" + device, app_id="a", conv=conv,
                       seq=seq, kind=kind)


class Pushkin:
    def __init__(self, answer: Callable[[PushRequest], Outcome] = Sent) -> None:
        self.answer = answer
        self.sent: list[str] = []

    async def send(self, requests: Sequence[PushRequest]) -> list[Outcome]:
        self.sent += [f"{r.device_id}:{r.seq}" for r in requests]
        return [self.answer(r) for r in requests]

    async def close(self) -> None:
        pass


class Devices:
    def __init__(self) -> None:
        self.deleted: list[tuple[str, str]] = []

    async def delete_device(self, user_id: str, device_id: str) -> bool:
        self.deleted.append((user_id, device_id))
        return True


class DeadLog:
    def __init__(self, away: int = 0) -> None:
        self.letters: list[DeadLetter] = []
        self.away = away

    async def publish_many(self, items: Sequence[DeadLetter]) -> None:
        if self.away:
            self.away -= 1
            raise Unavailable("the log is unavailable; retry")
        self.letters += items


def worker(pushkin: Pushkin, devices: Devices | None = None, dead: DeadLog | None = None,
           per_minute: int = 100) -> PushWorker:
    return PushWorker(InProcessLog(100), {"fcm": pushkin}, RetryPolicy(attempts=2), devices or Devices(),  # type: ignore[arg-type]
                      dead or DeadLog(), MemorySentMarks(60), DeviceRateLimit(per_minute),  # type: ignore[arg-type]
                      sleep=Sleeps())


async def test_a_batch_consumed_again_after_it_was_settled_sends_nothing() -> None:
    pushkin = Pushkin()
    w = worker(pushkin)
    await w.settle([req("d1"), req("d2")])
    await w.settle([req("d1"), req("d2"), req("d3")])  # redelivered after a crash before the commit
    assert pushkin.sent == ["d1:1", "d2:1", "d3:1"]


async def test_dead_tokens_are_pruned_and_exhausted_retries_dead_lettered() -> None:
    def answer(r: PushRequest) -> Outcome:
        return {"gone": Prune(r, "UNREGISTERED"), "busy": Retry(r, "UNAVAILABLE")}.get(r.device_id) or Sent(r)
    devices, dead = Devices(), DeadLog()
    delivery = await worker(Pushkin(answer), devices, dead).settle([req("gone"), req("busy"), req("ok")])
    assert devices.deleted == [("u", "gone")]
    assert [(d.request.device_id, d.reason, d.attempts) for d in dead.letters] == [("busy", "UNAVAILABLE", 2)]
    assert [s.request.device_id for s in delivery.sent] == ["ok"]


async def test_a_dead_letter_log_that_is_away_costs_a_second_try_of_the_dead_letters_only() -> None:
    pushkin = Pushkin(lambda r: Retry(r, "UNAVAILABLE") if r.device_id == "busy" else Sent(r))
    dead = DeadLog(away=1)
    w = worker(pushkin, dead=dead)
    batch = [req("busy"), req("ok")]
    with pytest.raises(Unavailable):
        await w.settle(batch)
    await w.settle(batch)  # the batch was not committed: it comes again
    assert pushkin.sent == ["busy:1", "ok:1", "busy:1", "busy:1", "busy:1"]
    assert [d.request.device_id for d in dead.letters] == ["busy"]


def test_a_batch_keeps_the_newest_push_per_device_conversation_and_kind() -> None:
    kept = collapse([req("d1", 1), req("d1", 3), req("d1", 2), req("d1", 2, conv="c2"), req("d1", 1, kind="clear")])
    assert sorted((r.conv, r.seq, r.kind) for r in kept) == [("c", 1, "clear"), ("c", 3, "message"),
                                                             ("c2", 2, "message")]


def test_the_rate_limit_drops_message_pushes_past_the_minute_but_never_calls_or_clears() -> None:
    now = [0.0]
    limit = DeviceRateLimit(2, clock=lambda: now[0])
    first = limit.admit([req("d1", 1, "a"), req("d1", 1, "b"), req("d1", 1, "c"), req("d2", 1, "a")])
    assert [(r.device_id, r.conv) for r in first] == [("d1", "a"), ("d1", "b"), ("d2", "a")]
    assert [r.kind for r in limit.admit([req("d1", 2, kind="clear"), req("d1", 2, kind="call")])] == ["clear", "call"]
    assert limit.admit([req("d1", 3)]) == []
    now[0] = 60.0
    assert len(limit.admit([req("d1", 4)])) == 1
