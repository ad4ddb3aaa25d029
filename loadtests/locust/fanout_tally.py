"""The master's view of channel posts: every worker's deliveries of each post added up, so one
post's time to its last delivery and deliveries per second cover subscribers on all workers.
Values in, values out.
"""

from __future__ import annotations

from dataclasses import dataclass

from loadtests.locust.ledger import Spread

#: A Spread on the wire between a worker and the master: [conv, seq, deliveries, first_ms, last_ms, sent_ns].
SpreadRow = tuple[str, int, int, float, float, int]


def to_rows(spreads: list[Spread]) -> list[SpreadRow]:
    return [(s.conv, s.seq, s.deliveries, s.first_ms, s.last_ms, s.sent_ns) for s in spreads]


#: Short posts listed by seq in the report.
SHORT_LISTED = 10


@dataclass
class _Post:
    deliveries: int
    first_ms: float
    last_ms: float
    sent_ns: int


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))  # ceil without floats' rounding
    return ordered[int(rank) - 1]


class FanoutTally:
    def __init__(self, subscribers: dict[str, int]) -> None:
        #: conv -> sessions expected to get each post.
        self._subscribers = subscribers
        self._posts: dict[tuple[str, int], _Post] = {}

    def add(self, rows: list[SpreadRow]) -> None:
        for conv, seq, deliveries, first_ms, last_ms, sent_ns in rows:
            if conv not in self._subscribers:
                continue
            post = self._posts.get((conv, seq))
            if post is None:
                self._posts[(conv, seq)] = _Post(deliveries, first_ms, last_ms, sent_ns)
            else:
                post.deliveries += deliveries
                post.first_ms = min(post.first_ms, first_ms)
                post.last_ms = max(post.last_ms, last_ms)

    def report(self, sent_before_ns: int) -> dict[str, object]:
        """Per channel, over the posts sent before `sent_before_ns` (later ones may have met
        subscribers that were stopping): how many, time to the last delivery (p50/p99/max over
        posts), each post's deliveries per second (median), and posts some subscriber never got."""
        out: dict[str, object] = {}
        for conv, expected in self._subscribers.items():
            posts = {seq: p for (c, seq), p in self._posts.items() if c == conv}
            counted = [p for p in posts.values() if p.sent_ns < sent_before_ns]
            if not counted:
                out[conv] = {"subscribers": expected, "posts": 0, "posts_left_out_at_stop": len(posts)}
                continue
            short = {seq: p.deliveries for seq, p in sorted(posts.items())
                     if p.sent_ns < sent_before_ns and p.deliveries < expected}
            lasts = [p.last_ms for p in counted]
            rates = [p.deliveries / (p.last_ms / 1000) for p in counted if p.last_ms > 0]
            out[conv] = {
                "subscribers": expected,
                "posts": len(counted),
                "time_to_last_delivery_ms": {"p50": percentile(lasts, 50), "p99": percentile(lasts, 99),
                                             "max": max(lasts)},
                "time_to_first_delivery_ms_p50": percentile([p.first_ms for p in counted], 50),
                "deliveries_per_s_p50": percentile(rates, 50) if rates else None,
                "posts_short_of_subscribers": len(short),
                # seq -> deliveries of the first short posts: where to look in the history
                "short_posts": dict(list(short.items())[:SHORT_LISTED]),
                "posts_left_out_at_stop": len(posts) - len(counted),
            }
        return out
