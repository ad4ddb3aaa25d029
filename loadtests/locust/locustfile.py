"""Parley's Locust load test: `locust -f loadtests/locust/locustfile.py --host URL
--parley-plan PLAN ...`, usually through `make loadtest` (loadtests/locust/run.py). Each user
runs one account of the plan over one WebSocket session; request events (request_type "WS"):

    connect, reconnect          TCP + upgrade + hello; a reconnect from the drop to hello ok
    send->ack                   a send until its `ok`
    send->delivery group|channel  send time (carried in the message) to a receiver's delivery
    sync, ping                  catching up; heartbeats
    unexpected close, error frame, acked, not delivered    failures only

The master writes what only it can add up (a channel post's deliveries on every worker) to
--parley-summary when it quits.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
from functools import partial
from pathlib import Path
from typing import Any

from gevent.event import Event
import locust.argument_parser
import locust.runners
from locust import User, constant, events, task
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from loadtests.locust.behaviours import Behaviour, Hold, Sender
from loadtests.locust.latency import CLOCKS
from loadtests.locust.plan import Conv, read_plan
from loadtests.locust.worker import REPORT_MESSAGE, MasterTally, Report, WorkerContext
from loadtests.locust.wsclient import ProtocolSession

log = logging.getLogger("parley.locust")

#: Heartbeats (one a second) a worker may miss before the master calls it missing and deals its
#: users to the others: Locust's 3 was exceeded by 25 workers starting at once on 2 cores, and
#: the users dealt on top of a worker's planned accounts then had no account to run.
locust.runners.HEARTBEAT_LIVENESS = 60

#: A worker handling a spawn message builds Locust's whole argument parser once per option the
#: master sent (~60 x 2 ms): with the master sending every worker one each second of the ramp,
#: 25 workers spent 3 cores on it and connected nobody. The defaults never change: built once.
locust.argument_parser.default_args_dict = functools.cache(locust.argument_parser.default_args_dict)

_state: dict[str, Any] = {}  # "context": this process's WorkerContext, "tally": the MasterTally
#: Set by spawning_complete, which may come before the first user has made the context.
_all_started = Event()


@events.init_command_line_parser.add_listener
def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--parley-plan", default="", help="the plan file (loadtests/locust/prepare.py)")
    parser.add_argument("--parley-clock", choices=CLOCKS, default="mono",
                        help="mono: every worker on this machine; wall: workers on several (clocks synced)")
    parser.add_argument("--parley-grace-s", type=float, default=10.0,
                        help="an acked message not delivered to every online member by then is a failure")
    parser.add_argument("--parley-summary", default="", help="master: the fan-out summary JSON it writes")


def _record(environment: Environment, name: str, ms: float, exc: Exception | None) -> None:
    environment.events.request.fire(request_type="WS", name=name, response_time=ms, response_length=0,
                                    exception=exc, context={})


@events.init.add_listener
def _on_init(environment: Environment, **_: object) -> None:
    runner = environment.runner
    options = environment.parsed_options
    if options is None or not options.parley_plan or isinstance(runner, WorkerRunner):
        return  # a worker makes its context at its first user (the plan comes with the spawn)
    _state["tally"] = MasterTally(read_plan(Path(options.parley_plan)), int(options.num_users or 0), options.parley_clock,
                                  options.parley_grace_s)
    if isinstance(runner, MasterRunner):
        runner.register_message(REPORT_MESSAGE, lambda msg, **_: _state["tally"].add(msg.data))


def _context(environment: Environment) -> WorkerContext:
    ctx: WorkerContext | None = _state.get("context")
    if ctx is None:
        options = environment.parsed_options
        runner = environment.runner
        assert options is not None and options.parley_plan, "--parley-plan is required"
        worker = runner.worker_index if isinstance(runner, WorkerRunner) else 0

        def report(data: Report) -> None:
            if isinstance(runner, WorkerRunner):
                runner.send_message(REPORT_MESSAGE, data)
            else:
                _state["tally"].add(data)

        ctx = WorkerContext(read_plan(Path(options.parley_plan)), worker, url=environment.host or "",
                            clock=options.parley_clock, grace_s=options.parley_grace_s,
                            record=partial(_record, environment), report=report, all_started=_all_started)
        _state["context"] = ctx
    return ctx


@events.spawning_complete.add_listener
def _on_spawning_complete(**_: object) -> None:
    _all_started.set()


@events.test_stop.add_listener
def _stop(environment: Environment, **_: object) -> None:
    tally: MasterTally | None = _state.get("tally")
    if tally is not None:
        tally.stopped()
    ctx: WorkerContext | None = _state.pop("context", None)
    if ctx is not None:
        ctx.stop()


@events.quitting.add_listener
def _write_summary(environment: Environment, **_: object) -> None:
    options = environment.parsed_options
    tally: MasterTally | None = _state.get("tally")
    if tally is not None and options is not None and options.parley_summary:
        Path(options.parley_summary).write_text(json.dumps(tally.summary(), indent=2))


class ParleyUser(User):
    """One account of the plan: its session, and its behaviour by role."""

    wait_time = constant(0)  # the behaviour paces itself

    def on_start(self) -> None:
        # A user without an account (a worker dealt more users than it has accounts) idles: one
        # that stopped was started again by the master at once, a million times a minute.
        self._behaviour: Behaviour = Hold()
        ctx = _context(self.environment)
        index = ctx.take_account()
        if index is None:
            if not _state.get("warned_idle"):
                _state["warned_idle"] = True
                log.warning("more users than this worker has accounts in the plan: the extra users idle")
            return
        account = ctx.plan.accounts[index]
        role, conv = ctx.role(index)
        self._ctx, self._conv = ctx, conv
        self._session = ProtocolSession(ctx.url, account.token, record=ctx.record,
                                        on_message=partial(ctx.delivered, account.user_id),
                                        source_ip=ctx.source_ip)
        try:
            self._session.start()  # a failure is recorded as `connect`
        except Exception:
            return
        ctx.came_online(conv, account.user_id)
        self._behaviour = _behaviour(ctx, self._session, role, conv)

    @task
    def step(self) -> None:
        self._behaviour.step()

    def on_stop(self) -> None:
        session: ProtocolSession | None = getattr(self, "_session", None)
        if session is not None:
            self._ctx.went_offline(self._conv, session.user_id)
            session.close()


def _behaviour(ctx: WorkerContext, session: ProtocolSession, role: str, conv: Conv | None) -> Behaviour:
    if conv is not None and role in ("chat", "post"):
        return Sender(ctx, session, conv)
    return Hold()
