"""What the users of one Locust process share: the plan and the accounts this process runs, who
of each conversation is online here, the delivery ledger, and the reports to the master (a
channel's deliveries are spread over workers; the master adds them up in a FanoutTally).
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Callable

import gevent
import msgspec
from gevent.event import Event

from loadtests.locust.fanout_tally import FanoutTally, SpreadRow, to_rows
from loadtests.locust.latency import Clock, elapsed_ms, now_ns, read_stamp
from loadtests.locust.ledger import DeliveryLedger
from loadtests.locust.plan import Conv, Plan, Role, roles
from parley.sdk.wire import Frame

#: (name, response time in ms, the failure or None): one Locust request event.
Record = Callable[[str, float, Exception | None], None]
#: The report of a worker to the master: {"spreads": [...], "unsettled": n}.
Report = dict[str, object]
REPORT_MESSAGE = "parley_report"
SETTLE_EVERY_S = 1.0
#: This worker's source address in 127.0.0.0/8 (set per worker process by run.py).
SOURCE_IP_ENV = "PARLEY_LT_SOURCE_IP"


class AckedNotDelivered(Exception):
    """A message acked by the server that an expected member did not get within the grace."""


class WorkerContext:
    def __init__(self, plan: Plan, worker: int, *, url: str, clock: Clock, grace_s: float, record: Record,
                 report: Callable[[Report], None], all_started: Event) -> None:
        self.plan = plan
        self.url = url
        self.clock = clock
        self.source_ip = os.environ.get(SOURCE_IP_ENV) or None
        self.roles = roles(plan)
        self.record = record
        self.ledger = DeliveryLedger()
        #: Set once every user of the run has started (Locust's spawning_complete).
        self.all_started = all_started
        self._grace_s = grace_s
        self._report = report
        self._accounts = list(plan.accounts_of(worker))
        self._next = 0
        #: conv -> user ids of its members online on this worker.
        self._online: dict[str, set[str]] = defaultdict(set)
        self._channels = {c.id for c in plan.convs if c.kind == "channel"}
        #: Messages stamped before this are an earlier run's (a session's first sync brings them).
        self._started_ns = now_ns(clock)
        self._settler = gevent.spawn(self._settle_loop)

    def take_account(self) -> int | None:
        """The next account of this worker for a starting user; None when all are taken."""
        if self._next >= len(self._accounts):
            return None
        index = self._accounts[self._next]
        self._next += 1
        return index

    def role(self, index: int) -> tuple[Role, Conv | None]:
        found = self.roles.get(index)
        return found if found is not None else ("hold", None)

    def came_online(self, conv: Conv | None, user_id: str) -> None:
        if conv is not None:
            self._online[conv.id].add(user_id)

    def went_offline(self, conv: Conv | None, user_id: str) -> None:
        if conv is not None:
            self._online[conv.id].discard(user_id)

    def acked(self, conv: Conv, seq: int) -> None:
        self.ledger.acked(conv.id, seq, frozenset(self._online[conv.id]), time.monotonic())

    def delivered(self, receiver: str, event: Frame) -> None:
        """A receiving session's message.new: its send -> delivery latency, into the ledger."""
        message = event.get("message") or {}
        stamp = read_stamp(message.get("text"))
        conv, seq = message.get("conv"), message.get("seq")
        if stamp is None or stamp.sent_ns < self._started_ns or not isinstance(conv, str) or not isinstance(seq, int):
            return  # not a load-test message of this run
        latency = elapsed_ms(stamp)
        if self.ledger.delivered(conv, seq, receiver, latency, time.monotonic(), sent_ns=stamp.sent_ns):
            kind = "channel" if conv in self._channels else "group"
            self.record(f"send->delivery {kind}", latency, None)

    def _settle_loop(self) -> None:
        while True:
            gevent.sleep(SETTLE_EVERY_S)
            self.settle(final=False)

    def settle(self, *, final: bool) -> None:
        """Overdue messages become failures; channel spreads (and, at the end, what is still
        unsettled) go to the master."""
        settled = self.ledger.settle(time.monotonic(), self._grace_s, final=final)
        for overdue in settled.overdue:
            self.record("acked, not delivered", 0.0, AckedNotDelivered(
                f"{overdue.conv}/{overdue.seq}: {len(overdue.missing)} members did not get it in "
                f"{self._grace_s:.0f} s"))
        spreads = [s for s in self.ledger.take_spreads() if s.conv in self._channels]
        if spreads or final:
            self._report({"spreads": to_rows(spreads), "unsettled": settled.unsettled})

    def stop(self) -> None:
        self._settler.kill(block=False)
        self.settle(final=True)


class MasterTally:
    """On the master (or the only process): the workers' reports added up."""

    def __init__(self, plan: Plan, users: int, clock: Clock, grace_s: float) -> None:
        # Every member online gets a post, its poster's own session included; in a channel
        # scenario every user is a member, and members beyond the users stay offline.
        self.fanout = FanoutTally({c.id: min(len(c.members), users) for c in plan.convs if c.kind == "channel"})
        self.unsettled = 0
        self._clock = clock
        self._grace_ns = int(grace_s * 1e9)
        self._stopped_ns: int | None = None

    def stopped(self) -> None:
        """The test stops: posts sent within the grace before now may not have reached everyone
        (subscribers are being stopped), so they are left out of the figures."""
        self._stopped_ns = now_ns(self._clock)

    def add(self, report: Report) -> None:
        rows = report.get("spreads")
        if isinstance(rows, list):
            self.fanout.add([_row(r) for r in rows])
        unsettled = report.get("unsettled")
        if isinstance(unsettled, int):
            self.unsettled += unsettled

    def summary(self) -> dict[str, object]:
        stopped = self._stopped_ns if self._stopped_ns is not None else now_ns(self._clock)
        return {"channels": self.fanout.report(stopped - self._grace_ns), "acked_unsettled_at_stop": self.unsettled}


def _row(raw: object) -> SpreadRow:
    """A row as it came from a worker (a JSON list), checked."""
    row: SpreadRow = msgspec.convert(raw, SpreadRow)
    return row

