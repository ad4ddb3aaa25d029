"""What calls/ costs per operation, in one process (one core): run `python -m loadtests.calls_bench`.

1. a LiveKit join token (calls/tokens.py: grants, room configuration, HS256 signature);
2. a whole join answer (the token, ICE servers with TURN credentials);
3. a webhook verified and parsed (calls/webhooks.py);
4. a call's transitions in the state machine (start, answer, two joins, a leave that ends it).
Prints per-operation p50/p99 in µs and operations per second of one core.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import time
from collections.abc import Callable

from livekit.protocol.models import ParticipantInfo, Room
from livekit.protocol.webhook import WebhookEvent

from calls import state as S
from calls.join import JoinMinter
from calls.tokens import Role, TokenMinter
from calls.webhooks import WebhookIntake
from parley.config import Settings
from parley.frames import Media, ParticipantJoined
from tests.livekit_standin import signed_webhook  # signed as LiveKit signs (run from a checkout)

KEY, SECRET = "APIbench", "a-bench-secret-of-at-least-32-chars!"


def run(fn: Callable[[], object], seconds: float) -> tuple[int, list[int]]:
    """Calls fn for about `seconds`; (calls, per-call ns)."""
    for _ in range(200):
        fn()
    clock, samples = time.perf_counter_ns, []
    deadline = clock() + int(seconds * 1e9)
    gc.disable()
    try:
        while clock() < deadline:
            t0 = clock()
            fn()
            samples.append(clock() - t0)
    finally:
        gc.enable()
    return len(samples), samples


def report(name: str, samples: list[int]) -> None:
    samples.sort()
    n = len(samples)
    per_s = n / (sum(samples) / 1e9)
    print(f"{name:<46} p50 {samples[n // 2] / 1000:7.1f} µs  p99 {samples[min(n - 1, n * 99 // 100)] / 1000:7.1f} µs"
          f"  {per_s:9,.0f}/s per core  (n={n:,})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="how long each measurement runs")
    args = parser.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, whatever the machine has
    print(f"python {platform.python_version()}, {platform.machine()}, pinned to one core")

    call = S.start(call_id="kbench", conv="c1", media=Media.VIDEO, initiator="uann", device="d1", callees=["ubob"],
                   direct=True, max_participants=2, ring_timeout_ms=45_000, now=0).call
    minter = TokenMinter(api_key=KEY, api_secret=SECRET, ttl_s=600, empty_timeout_s=45)
    report("join token (TokenMinter.mint)", run(lambda: minter.mint(call, user="ubob", device="phone", name="Bob",
                                                                     role=Role.SPEAKER), args.seconds)[1])

    join = JoinMinter.from_settings(Settings(livekit_url="wss://lk.example.org", livekit_api_key=KEY,
                                             livekit_api_secret=SECRET, stun_urls=("stun:s:3478",),
                                             turn_urls=("turn:t:3478?transport=udp",), turn_secret="ts"))
    assert join is not None
    report("join answer (token + TURN credentials)", run(
        lambda: join.join(call, user="ubob", device="phone", name="Bob", role=Role.SPEAKER, now_s=1), args.seconds)[1])

    event = WebhookEvent(event="participant_joined", room=Room(name="parley-call-kbench"), id="EV_1", created_at=1,
                         participant=ParticipantInfo(identity="ubob:phone", sid="PA_1"))
    body, token = signed_webhook(event, KEY, SECRET)
    intake = WebhookIntake(KEY, SECRET)
    report("webhook verified and parsed", run(lambda: intake.receive(body, token), args.seconds)[1])

    def a_whole_call() -> object:
        out = S.start(call_id="k", conv="c", media=Media.AUDIO, initiator="a", device="p", callees=["b"], direct=True,
                      max_participants=2, ring_timeout_ms=45_000, now=0)
        c = S.join(out.call, "b", "p", 1).call
        c = S.reconcile(c, ParticipantJoined(call="k", user="a", device="p", sid="1"), 2).call
        c = S.reconcile(c, ParticipantJoined(call="k", user="b", device="p", sid="2"), 3).call
        return S.leave(c, "a", "p", 4)

    report("a call's 5 transitions (start .. ended)", run(a_whole_call, args.seconds)[1])


if __name__ == "__main__":
    main()
