"""What the policy costs on the send path, in-process (no sockets, no store): run
`python -m loadtests.policy_bench` (or `make bench-policy`).

1. `decide`: one policy decision for a member sending in a group (every rule evaluated, none
   firing), and for the same member while muted (a denial with its reason rendered).
2. chat_core's send decision (`ChatCore.handle`: idempotency, the policy's facts and rules, the
   flood check, the content filter, sequencing, the message and event encoded), in batches of 512
   as the worker runs them, with the full policy vs allow-all (`ChatCore(enforce=False)`, composed
   here: no setting of a server turns the policy off), and with a 50-word content filter.
Prints p50/p99/mean in µs per call and sends/s of the decision loop.
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import time
from collections.abc import Callable

from chat_core.core import ChatCore
from moderation import policy
from moderation.filters import ContentFilter, WordList
from moderation.policy import Action, Subject
from parley import frames as F
from parley.records import Command, ConvRow, ConvState, Facts, MemberRow

NOW = 1_700_000_000_000
GROUP = 50
BATCH = 512


def percentiles(samples: list[int]) -> tuple[float, float, float]:
    samples.sort()
    n = len(samples)
    return samples[n // 2] / 1000, samples[min(n - 1, int(n * 0.99))] / 1000, statistics.fmean(samples) / 1000


def time_calls(fn: Callable[[], object], n: int, warmup: int = 5_000) -> list[int]:
    for _ in range(warmup):
        fn()
    clock = time.perf_counter_ns
    out = []
    gc.disable()
    try:
        for _ in range(n):
            t0 = clock()
            fn()
            out.append(clock() - t0)
    finally:
        gc.enable()
    return out


def bench_decide(n: int) -> list[tuple[str, list[int]]]:
    allow = Subject(kind="group", visibility="private", role="member", now=NOW, slow_mode_s=0,
                    last_sent_at=NOW - 5_000, repeats=1)
    muted = Subject(kind="group", visibility="private", role="member", now=NOW, muted_until=NOW + 600_000)
    return [("decide: member sends in a group (allowed)", time_calls(lambda: policy.decide(allow, Action.SEND), n)),
            ("decide: the same member while muted (denied)", time_calls(lambda: policy.decide(muted, Action.SEND), n))]


def group_state() -> ConvState:
    row = ConvRow(id="c1", kind="group", title="bench", visibility="private", password_hash=None, history="joined",
                  owner="u0", created_at=NOW)
    members = {f"u{i}": MemberRow(conv="c1", user=f"u{i}", role="owner" if i == 0 else "member", visible_from=1,
                                  read_seq=0, joined_at=NOW) for i in range(GROUP)}
    return ConvState(row, members)


def bench_sends(n: int, *, enforce: bool, content_filter: ContentFilter | None = None) -> tuple[list[int], float]:
    """Per-send µs of `handle`, and sends/s of the whole decision loop (handle + finish + committed)."""
    core = ChatCore(enforce=enforce, content_filter=content_filter)
    core.convs["c1"] = group_state()
    text = "t=%012d;" + "x" * 48  # 64 characters, as `loadtests.bench` sends
    cmds = [Command("c1", f"u{i % GROUP}", "gw", f"s{i % GROUP}",
                    F.Send(rid=f"r{i}", conv="c1", cmid=f"m{i}", text=text % i)) for i in range(n)]
    facts = Facts()
    samples: list[int] = []
    clock = time.perf_counter_ns
    gc.disable()
    start = clock()
    try:
        for lo in range(0, n, BATCH):
            batch = core.begin()
            for cmd in cmds[lo:lo + BATCH]:
                t0 = clock()
                core.handle(cmd, facts, NOW + lo, batch)
                samples.append(clock() - t0)
            batch.finish(core.convs)
            core.committed(batch)
    finally:
        gc.enable()
    elapsed = (clock() - start) / 1e9
    return samples, n / elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", type=int, default=100_000, help="calls per cell (default 100000)")
    p.add_argument("--rounds", type=int, default=3, help="send-loop rounds per variant, interleaved (default 3)")
    args = p.parse_args()
    print(f"# {platform.processor() or platform.machine()}, Python {platform.python_version()}, N = {args.n}")
    print(f"{'what':58} {'p50 µs':>8} {'p99 µs':>8} {'mean µs':>8} {'sends/s':>10}")
    for label, samples in bench_decide(args.n):
        p50, p99, mean = percentiles(samples)
        print(f"{label:58} {p50:8.2f} {p99:8.2f} {mean:8.2f} {'':>10}")
    words = WordList([f"badword{i}" for i in range(49)] + ["free money"])
    variants: list[tuple[str, dict[str, object]]] = [
        ("handle(send): allow-all", {"enforce": False}),
        ("handle(send): full policy", {"enforce": True}),
        ("handle(send): full policy + 50-word content filter", {"enforce": True, "content_filter": words}),
    ]
    bench_sends(20_000, enforce=True)  # warm-up
    results: dict[str, tuple[list[int], list[float]]] = {label: ([], []) for label, _ in variants}
    for _ in range(args.rounds):  # interleaved, so drift on a shared machine hits every variant alike
        for label, kw in variants:
            samples, rate = bench_sends(args.n, **kw)  # type: ignore[arg-type]
            results[label][0].extend(samples)
            results[label][1].append(rate)
    base = statistics.median(results[variants[0][0]][1])
    for label, (samples, rates) in results.items():
        p50, p99, mean = percentiles(samples)
        rate = statistics.median(rates)
        print(f"{label:58} {p50:8.2f} {p99:8.2f} {mean:8.2f} {rate:10,.0f}"
              + ("" if rate == base else f"  ({(rate - base) / base:+.1%} vs allow-all)"))


if __name__ == "__main__":
    main()
