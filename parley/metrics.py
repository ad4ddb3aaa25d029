"""The Prometheus metrics of every role besides the per-hop histograms (parley.hops) and the
refusals (parley.health): one home for their names and labels, all listed in
docs/operations.md. Labels are bounded: ops, codes, rules, limits, topics and partitions; never a
user, session or conversation id.
"""

from __future__ import annotations

import asyncio
import time

import msgspec
from prometheus_client import Counter, Gauge, Histogram

from parley.errors import Forbidden, ParleyError

# ---- gateway ------------------------------------------------------------------------------

CONNECTIONS = Gauge("parley_gateway_connections", "WebSocket sessions open on this gateway.")
CONNECTS = Counter("parley_gateway_connects", "WebSocket connections that ended their hello: `ok`, or the close "
                   "code that refused them.", ["result"])
DISCONNECTS = Counter("parley_gateway_disconnects", "WebSocket sessions ended, by close code (4008: too slow to "
                      "read; 1006: the connection was lost without a close).", ["code"])
DELIVERIES = Counter("parley_gateway_deliveries", "Event frames written to sessions (one per session).")
QUEUE_OVERFLOWS = Counter("parley_gateway_queue_overflows", "Sessions whose send queue overflowed: their queued "
                          "frames were dropped for a `resync`, and the session closed 4008.")

# ---- requests and decisions (gateway and chat_core) -----------------------------------------

REQUESTS = Counter("parley_requests", "Requests answered, by op and result code (`ok` or the error code): reads "
                   "by the gateway, writes by chat_core (or by the gateway when it refuses them first).",
                   ["op", "code"])
POLICY_DENIALS = Counter("parley_policy_denials", "Writes the moderation policy refused, by rule.", ["rule"])
RATE_LIMITED = Counter("parley_rate_limited", "Requests refused by a rate limit, by limit.", ["limit"])

# ---- pipeline -----------------------------------------------------------------------------

CONSUMER_LAG = Gauge("parley_consumer_lag", "Records of a log partition not yet consumed by this process "
                     "(high watermark minus the next offset), as of its last fetch.", ["topic", "partition"])
OUTBOX_PENDING = Gauge("parley_outbox_pending", "Stored events this chat-core's relay has not published yet.")
OUTBOX_AGE = Gauge("parley_outbox_oldest_seconds", "Age of the oldest stored event this chat-core's relay has "
                   "not published yet (0 when none waits).")

# ---- push ---------------------------------------------------------------------------------

PUSHES = Counter("parley_push", "Push notifications once retries are over, by provider and outcome (`sent`; "
                 "`pruned`: the token is gone; `failed`: a rejection sending again will not fix; `dead`: "
                 "retries exhausted).", ["provider", "outcome"])
PUSH_RETRIES = Counter("parley_push_retries", "Push notifications sent again (one per extra attempt).")

# ---- process ------------------------------------------------------------------------------

LOOP_LAG = Histogram("parley_event_loop_lag_seconds", "How late the event loop ran a timer: time the process "
                     "could not answer anything.",
                     buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5))

#: How often the loop lag is sampled: often enough to see a stall of a few ms, rare enough to cost
#: nothing (one timer every 250 ms).
LOOP_LAG_EVERY_S = 0.25


def answered(request: msgspec.Struct, err: ParleyError | None = None) -> None:
    """Count one answered request (`err`: it was refused), and a policy denial by its rule."""
    op = request.__struct_config__.tag
    REQUESTS.labels(op if isinstance(op, str) else type(request).__name__, "ok" if err is None else err.code).inc()
    if isinstance(err, Forbidden) and err.rule is not None:
        POLICY_DENIALS.labels(err.rule).inc()


def result_of(code: int | None) -> str:
    """A close code as a bounded label."""
    return "none" if code is None else str(code)


async def watch_event_loop(every_s: float = LOOP_LAG_EVERY_S) -> None:
    """Runs for the life of the process: the time a sleep overshoots is the loop's lag."""
    while True:
        before = time.monotonic()
        await asyncio.sleep(every_s)
        LOOP_LAG.observe(max(0.0, time.monotonic() - before - every_s))
