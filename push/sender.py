"""Sending a batch of push requests: each to the pushkin of its platform's provider, all
providers at once, each with retries; and the pushkins the settings configure."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Literal

from parley import metrics
from parley.config import Settings
from push.notification import Failed, Platform, PushRequest
from push.providers import Pushkin
from push.retry import Delivery, RetryPolicy, send_with_retries

Provider = Literal["fcm", "apns"]
#: Which provider sends to each platform: APNs takes both of an iPhone's tokens.
PROVIDERS: dict[Platform, Provider] = {"fcm": "fcm", "apns": "apns", "apns_voip": "apns"}


def configured_pushkins(settings: Settings) -> dict[Provider, Pushkin]:
    """A pushkin per provider with credentials in `settings` (none: push is off). Call it
    inside the event loop that will send (aioapns binds to it)."""
    pushkins: dict[Provider, Pushkin] = {}
    # The provider clients are imported only where credentials exist: firebase-admin and aioapns
    # weigh about 60 MiB, which every process of every role would otherwise carry for nothing.
    if settings.fcm_credentials is not None:
        from push.providers.fcm import FCM_ENDPOINT, FcmPushkin, fcm_app

        pushkins["fcm"] = FcmPushkin(fcm_app(settings.fcm_credentials), timeout_s=settings.push_send_timeout_s,
                                     endpoint=settings.fcm_endpoint or FCM_ENDPOINT)
    if settings.apns_key is not None:
        from push.providers.apns import ApnsPushkin, apns_client

        assert settings.apns_key_id and settings.apns_team_id and settings.apns_topic  # all four: from_env
        client = apns_client(key_path=settings.apns_key, key_id=settings.apns_key_id,
                             team_id=settings.apns_team_id, topic=settings.apns_topic, sandbox=settings.apns_sandbox,
                             endpoint=settings.apns_endpoint)
        pushkins["apns"] = ApnsPushkin(client, timeout_s=settings.push_send_timeout_s)
    return pushkins


async def send_all(pushkins: Mapping[Provider, Pushkin], requests: Sequence[PushRequest], policy: RetryPolicy,
                   *, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> Delivery:
    """Sends every request through its provider's pushkin, the providers side by side. A
    request for a provider that is not configured fails (`provider_not_configured`)."""
    delivery = Delivery()
    by_provider: dict[Provider, list[PushRequest]] = defaultdict(list)
    for request in requests:
        provider = PROVIDERS[request.platform]
        if provider in pushkins:
            by_provider[provider].append(request)
        else:
            delivery.failed.append(Failed(request, "provider_not_configured"))
    for part in await asyncio.gather(*(send_with_retries(pushkins[provider], batch, policy, sleep=sleep)
                                       for provider, batch in by_provider.items())):
        delivery.add(part)
    _count(delivery)
    return delivery


def _count(delivery: Delivery) -> None:
    outcomes = (("sent", delivery.sent), ("pruned", delivery.pruned), ("failed", delivery.failed),
                ("dead", delivery.dead))
    for outcome, items in outcomes:
        for item in items:
            metrics.PUSHES.labels(PROVIDERS[item.request.platform], outcome).inc()
    metrics.PUSH_RETRIES.inc(delivery.retried)
