"""Where a message's time goes: a timestamp per stage, carried with it, and a histogram per hop.

A write collects `time.time_ns()` stamps as it moves (`t_ns` on `Command`, `EventRecord` and
`Deliver`): the gateway's publish, chat_core's consume and store, the relay's publish,
delivery's consume and its bus publish. Each stage appends its stamp and observes the hop since
the previous one in `parley_hop_seconds{hop=...}`; the gateway that pushes the event to sockets
observes the last hop and the whole `pipeline`. Every process serves its own histograms on
`/metrics` (Prometheus text), so a scrape of all processes, merged, gives the per-hop
distribution of the whole topology (`loadtests/bench.py --topology up` does exactly that).

Stamps compare wall clocks of different processes: exact on one machine, and off by the clock
skew between nodes in a cluster (NTP keeps that to about a millisecond; `pipeline` and the
hops inside one process are unaffected). A stamp list of the wrong length (an event replayed
from the outbox after a restart, a command of an older gateway) is not observed: its hops
would be mislabelled.
"""

from __future__ import annotations

import time
from enum import IntEnum
from typing import TypeVar

import msgspec
from prometheus_client import Gauge, Histogram

from parley import tracing
from parley.ports import Deliver
from parley.records import EventRecord

Stamped = TypeVar("Stamped", EventRecord, Deliver)

#: Fine at the low end, where the hops of a healthy topology live; coarse up to a minute, where
#: an overloaded one's queues are.
BUCKETS = (.001, .002, .003, .005, .0075, .01, .015, .02, .03, .04, .05, .075, .1, .125, .15, .2, .25,
           .3, .4, .5, .75, 1, 1.5, 2, 3, 5, 10, 20, 30, 60)

HOP_SECONDS = Histogram("parley_hop_seconds", "Time between two stages of a write, by hop.", ["hop"],
                        buckets=BUCKETS)
PROCESS_INFO = Gauge("parley_process_info", "This process's role and id (always 1).", ["role", "id"])


class Stage(IntEnum):
    """The stamps of a write, in order: a stamp's index in `t_ns` is its stage."""

    GATEWAY_PUBLISH = 0      # the gateway starts publishing the command
    CORE_CONSUMED = 1        # chat_core got it from the command log
    STORED = 2               # its batch is durable
    RELAY_PUBLISH = 3        # the relay starts publishing its event
    DELIVERY_CONSUMED = 4    # delivery got the event from the event log
    BUS_PUBLISH = 5          # delivery starts publishing it to the gateways
    GATEWAY_PUSH = 6         # a gateway pushes it to its sessions


#: The hop that ends at each stage: the time since the stage before it.
HOP_TO = {
    Stage.CORE_CONSUMED: "gateway_to_core",
    Stage.STORED: "core_store",
    Stage.RELAY_PUBLISH: "outbox_wait",
    Stage.DELIVERY_CONSUMED: "relay_to_delivery",
    Stage.BUS_PUBLISH: "delivery_fanout",
    Stage.GATEWAY_PUSH: "bus_to_gateway",
}
_HOPS = {stage: HOP_SECONDS.labels(hop) for stage, hop in HOP_TO.items()}
PIPELINE = HOP_SECONDS.labels("pipeline")
#: Local waits on a broker's acknowledgement (inside the next hop, shown on their own); time
#: them with `with GATEWAY_ACK.time(): ...`.
GATEWAY_ACK = HOP_SECONDS.labels("gateway_publish_ack")
RELAY_ACK = HOP_SECONDS.labels("relay_publish_ack")


def start() -> list[int]:
    """The first stamp, as the gateway publishes a command."""
    return [time.time_ns()]


def stamp(t_ns: list[int], stage: Stage, now: int | None = None, *, trace: str | None = None) -> list[int]:
    """`t_ns` with `stage`'s stamp appended, and the hop to it observed; unchanged (and nothing
    observed) unless `t_ns` holds exactly the stages before this one. `trace` (the message's
    traceparent) becomes the end-to-end observation's exemplar when sampled."""
    if len(t_ns) != stage:
        return t_ns
    now = time.time_ns() if now is None else now
    _HOPS[stage].observe((now - t_ns[-1]) / 1e9)
    if stage == Stage.GATEWAY_PUSH:
        PIPELINE.observe((now - t_ns[0]) / 1e9, tracing.exemplar(trace))
    return [*t_ns, now]


def restamp(item: Stamped, stage: Stage, now: int | None = None) -> Stamped:
    """`item` with `stage` stamped (see `stamp`)."""
    t_ns = stamp(item.t_ns, stage, now)
    return item if t_ns is item.t_ns else msgspec.structs.replace(item, t_ns=t_ns)


def register_process(role: str, identity: str) -> None:
    PROCESS_INFO.labels(role, identity).set(1)
