"""Sending a batch across providers (push/sender.py): routing by platform, unconfigured providers."""

from __future__ import annotations

from push.notification import Failed, Platform, Prune, PushRequest, Retry, Sent
from push.retry import RetryPolicy
from push.sender import send_all
from tests.push_standins.fixtures import Sleeps
from tests.unit.test_push_retry import ScriptedPushkin


def req(device: str, platform: Platform) -> PushRequest:
    return PushRequest(user="u", device_id=device, platform=platform, token="t", app_id="a", conv="c", seq=1,
                       kind="call" if platform == "apns_voip" else "message", call_id="k")


async def test_each_platform_goes_to_its_provider_and_the_answers_are_merged() -> None:
    fcm = ScriptedPushkin(lambda r, n: Sent(r) if n > 1 else Retry(r, "UNAVAILABLE"))
    apns = ScriptedPushkin(lambda r, n: Prune(r, "Unregistered") if r.device_id == "dead" else Sent(r))
    batch = [req("a", "fcm"), req("b", "apns"), req("c", "apns_voip"), req("dead", "apns")]
    delivery = await send_all({"fcm": fcm, "apns": apns}, batch, RetryPolicy(attempts=3), sleep=Sleeps())
    assert fcm.calls == [["a"], ["a"]] and apns.calls == [["b", "c", "dead"]]
    assert sorted(s.request.device_id for s in delivery.sent) == ["a", "b", "c"]
    assert delivery.pruned == [Prune(req("dead", "apns"), "Unregistered")] and delivery.retried == 1


async def test_a_platform_without_a_configured_provider_fails_without_being_sent() -> None:
    fcm = ScriptedPushkin(lambda r, n: Sent(r))
    delivery = await send_all({"fcm": fcm}, [req("a", "apns"), req("b", "fcm")], RetryPolicy(), sleep=Sleeps())
    assert delivery.failed == [Failed(req("a", "apns"), "provider_not_configured")]
    assert [s.request.device_id for s in delivery.sent] == ["b"] and fcm.calls == [["b"]]


async def test_outcomes_are_counted_by_provider_and_outcome() -> None:
    from prometheus_client import REGISTRY

    def counted(provider: str, outcome: str) -> float:
        return REGISTRY.get_sample_value("parley_push_total", {"provider": provider, "outcome": outcome}) or 0.0

    before = (counted("fcm", "sent"), counted("apns", "failed"),
              REGISTRY.get_sample_value("parley_push_retries_total") or 0.0)
    fcm = ScriptedPushkin(lambda r, n: Sent(r) if n > 1 else Retry(r, "UNAVAILABLE"))
    await send_all({"fcm": fcm}, [req("a", "apns"), req("b", "fcm")], RetryPolicy(attempts=3), sleep=Sleeps())
    assert (counted("fcm", "sent"), counted("apns", "failed"),
            REGISTRY.get_sample_value("parley_push_retries_total")) == (before[0] + 1, before[1] + 1, before[2] + 1)
