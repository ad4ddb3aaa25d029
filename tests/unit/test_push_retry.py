"""Retries of refused pushes (push/retry.py): backoff with jitter, Retry-After, dead letters."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from push.notification import Failed, Outcome, Prune, PushRequest, Retry, Sent
from push.retry import DeadLetter, RetryPolicy, send_with_retries
from tests.push_standins.fixtures import Sleeps


def req(device: str) -> PushRequest:
    return PushRequest(user="u", device_id=device, platform="fcm", token="t-" + device, app_id="a", conv="c", seq=1)


class ScriptedPushkin:
    """Answers each device by a script: a function of (device id, attempt number) -> outcome."""

    def __init__(self, answer: Callable[[PushRequest, int], Outcome]) -> None:
        self.answer = answer
        self.calls: list[list[str]] = []

    async def send(self, requests: Sequence[PushRequest]) -> list[Outcome]:
        self.calls.append([r.device_id for r in requests])
        return [self.answer(r, len(self.calls)) for r in requests]

    async def close(self) -> None:
        pass



POLICY = RetryPolicy(attempts=4, base_s=1.0, max_delay_s=30.0)


async def test_what_is_accepted_at_once_is_not_retried() -> None:
    sleeps = Sleeps()
    d = await send_with_retries(ScriptedPushkin(lambda r, n: Sent(r)), [req("a"), req("b")], POLICY, sleep=sleeps)
    assert [s.request.device_id for s in d.sent] == ["a", "b"]
    assert (d.retried, d.dead, sleeps.waits) == (0, [], [])


async def test_refused_pushes_are_sent_again_with_a_growing_jittered_backoff_until_accepted() -> None:
    sleeps = Sleeps()
    pushkin = ScriptedPushkin(lambda r, n: Sent(r) if n == 3 or r.device_id == "ok" else Retry(r, "UNAVAILABLE"))
    d = await send_with_retries(pushkin, [req("a"), req("ok")], POLICY, sleep=sleeps)
    assert pushkin.calls == [["a", "ok"], ["a"], ["a"]]  # only the refused one goes again
    assert sorted(s.request.device_id for s in d.sent) == ["a", "ok"]
    assert d.retried == 2 and d.dead == []
    assert 1.0 <= sleeps.waits[0] <= 2.0 and 2.0 <= sleeps.waits[1] <= 3.0


async def test_the_backoff_is_jittered() -> None:
    waits = set()
    for _ in range(5):
        sleeps = Sleeps()
        await send_with_retries(ScriptedPushkin(lambda r, n: Retry(r, "x") if n == 1 else Sent(r)), [req("a")],
                                POLICY, sleep=sleeps)
        waits.add(sleeps.waits[0])
    assert len(waits) > 1


async def test_retry_after_is_waited_out_even_when_longer_than_the_backoff() -> None:
    sleeps = Sleeps()
    answer = (lambda r, n: Retry(r, "QUOTA_EXCEEDED", after_s=12.0) if n == 1 else Sent(r))
    d = await send_with_retries(ScriptedPushkin(answer), [req("a")], POLICY, sleep=sleeps)
    assert sleeps.waits == [12.0] and len(d.sent) == 1


async def test_a_retry_after_beyond_the_longest_wait_is_dead_lettered_at_once() -> None:
    sleeps = Sleeps()
    pushkin = ScriptedPushkin(lambda r, n: Retry(r, "QUOTA_EXCEEDED", after_s=3600.0))
    d = await send_with_retries(pushkin, [req("a")], POLICY, sleep=sleeps)
    assert d.dead == [DeadLetter(req("a"), "QUOTA_EXCEEDED", 1)]
    assert sleeps.waits == [] and len(pushkin.calls) == 1


async def test_pushes_still_refused_after_the_last_attempt_are_dead_letters() -> None:
    sleeps = Sleeps()
    pushkin = ScriptedPushkin(lambda r, n: Retry(r, f"503-{n}"))
    d = await send_with_retries(pushkin, [req("a"), req("b")], POLICY, sleep=sleeps)
    assert len(pushkin.calls) == POLICY.attempts and len(sleeps.waits) == POLICY.attempts - 1
    assert d.dead == [DeadLetter(req("a"), "503-4", 4), DeadLetter(req("b"), "503-4", 4)]
    assert d.retried == 2 * (POLICY.attempts - 1) and d.sent == []


async def test_every_push_ends_in_exactly_one_list() -> None:
    def answer(r: PushRequest, n: int) -> Outcome:
        outcomes: dict[str, Outcome] = {"sent": Sent(r), "prune": Prune(r, "UNREGISTERED"),
                                        "fail": Failed(r, "INVALID_ARGUMENT"), "retry": Retry(r, "UNAVAILABLE")}
        return outcomes[r.device_id]
    d = await send_with_retries(ScriptedPushkin(answer), [req("sent"), req("prune"), req("fail"), req("retry")],
                                RetryPolicy(attempts=2, base_s=0.01), sleep=Sleeps())
    assert [len(d.sent), len(d.pruned), len(d.failed), len(d.dead)] == [1, 1, 1, 1]
    assert d.pruned == [Prune(req("prune"), "UNREGISTERED")] and d.dead[0].request == req("retry")


async def test_one_attempt_means_no_retry() -> None:
    d = await send_with_retries(ScriptedPushkin(lambda r, n: Retry(r, "x")), [req("a")], RetryPolicy(attempts=1),
                                sleep=Sleeps())
    assert d.dead == [DeadLetter(req("a"), "x", 1)] and d.retried == 0


def test_a_policy_without_attempts_is_refused() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)
