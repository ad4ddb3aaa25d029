"""The calls role (docs/adr/0004-calls.md): it takes LiveKit's webhooks and turns them into
`call.reconcile` commands on the call's conversation, fires the ring timers as `call.ring_timeout`
commands, sweeps the rooms of calls live for a while for the webhooks LiveKit lost (what it finds
goes to the writer as `call.reconcile` too), and carries out in LiveKit's rooms what the
conversations' writers decided (the `RoomWork` records of the outbox: put sessions out, close a
room). It decides nothing about a call: every transition is its writer's.

It follows the outbox's stream (its own consumer group when scaled out; a side log of the
in-process one in `parley dev`), so what it must do survives its own restart: the stream is read
again from the last commit, and the ring timers are armed again from the store.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import TYPE_CHECKING

import msgspec
from aiohttp import web

from calls.ringing import RingTimers
from calls.sweep import SweptCalls
from calls.tokens import identity, parse_identity, room_name
from parley import frames as F
from parley.backoff import wait_out
from parley.errors import ParleyError, Unavailable, error_body
from parley.events import AnyCallEvent
from parley.health import PipelineTasks
from parley.ids import conv_of_call
from parley.ports import CallStore, LogConsumer, LogProducer
from parley.records import Command, EventRecord, RoomWork

if TYPE_CHECKING:  # both import livekit-api, which only a process with a LiveKit loads (parley.app.roles)
    from calls.livekit import LiveKitRooms
    from calls.webhooks import WebhookIntake

log = logging.getLogger(__name__)

#: The user and session of the commands this role publishes (their replies go nowhere).
ACTOR = "calls"
WEBHOOK_PATH = "/v1/calls/livekit/webhook"
#: The records of the outbox this role acts on, told apart by how their frames begin.
_CALL_EVENT = b'{"op":"event","type":"call.'
_ROOM_WORK = b'{"type":"call.room"'
#: At start, ring timers are armed again for calls whose deadline is at most this long ago: the
#: longest the role may have been away and still end the calls that rang meanwhile as missed.
RING_LOOKBACK_MS = 86_400_000
#: Attempts of one piece of room work while LiveKit is unavailable, and the wait between them.
ROOM_ATTEMPTS, ROOM_RETRY_S = 4, 1.0
BATCH_MAX = 256

_decode_event = msgspec.json.Decoder(AnyCallEvent).decode
_decode_work = msgspec.json.Decoder(RoomWork).decode


def wants(record: EventRecord) -> bool:
    """Whether the calls role acts on this record of the outbox (a call event or room work)."""
    return record.frame.startswith((_CALL_EVENT, _ROOM_WORK))


def _now_ms() -> int:
    return int(time.time() * 1000)


class CallsService:
    def __init__(self, *, rooms: LiveKitRooms, intake: WebhookIntake, commands: LogProducer[Command],
                 records: LogConsumer[EventRecord], store: CallStore, name: str, ring_timeout_s: int,
                 sweep_interval_s: float, sweep_grace_s: float) -> None:
        """`name`: this process on the bus (the writers' replies to it go nowhere). Every
        `sweep_interval_s`, the rooms of the calls active for `sweep_grace_s` are swept."""
        self._rooms = rooms
        self._intake = intake
        self._commands = commands
        self._records = records
        self._store = store
        self._name = name
        self._ring_timeout_ms = ring_timeout_s * 1000
        self._timers = RingTimers()
        self._swept = SweptCalls()
        self._sweep_interval_s = sweep_interval_s
        self._sweep_grace_ms = int(sweep_grace_s * 1000)
        self._armed = asyncio.Event()
        self._rids = itertools.count(1)
        self._tasks = PipelineTasks()

    async def start(self) -> None:
        self._tasks.add(self._follow(), "calls: records")
        self._tasks.add(self._ring(), "calls: timers")
        self._tasks.add(self._sweep(), "calls: sweep")

    def running(self) -> bool:
        return self._tasks.running()

    async def stop(self) -> None:
        await self._tasks.stop()
        await self._rooms.aclose()

    def mount(self, app: web.Application) -> None:
        app.router.add_post(WEBHOOK_PATH, self.webhook)

    # ---- webhooks -------------------------------------------------------------------------

    async def webhook(self, request: web.Request) -> web.Response:
        """Verified (a bad signature or body hash is 401 and changes nothing), then handed to the
        call's writer; answered once the command is in the log. Duplicates and late deliveries
        are the writer's to ignore."""
        try:
            event = self._intake.receive(await request.read(), request.headers.get("Authorization"))
            conv = conv_of_call(event.call) if event is not None else ""
            if event is not None and conv:
                await self._publish(conv, F.CallReconcile(rid=self._rid(), event=event))
        except ParleyError as err:
            return web.json_response(error_body(err), status=err.http_status)
        return web.json_response({})

    # ---- the outbox's records -------------------------------------------------------------

    async def _follow(self) -> None:
        while True:
            try:
                records = await self._records.next_batch(BATCH_MAX)
                now, work = _now_ms(), []
                for record in records:
                    if record.frame.startswith(_CALL_EVENT):
                        event = _decode_event(record.frame)
                        self._timers.observe(event)
                        self._swept.observe(event, now)
                    elif record.frame.startswith(_ROOM_WORK):
                        work.append(_decode_work(record.frame))
                self._armed.set()
                for item in work:
                    await self._carry_out(item)
                await self._records.commit()
            except Unavailable as err:  # the log is away: what was not committed comes again
                await wait_out(err, log, "calls")

    async def _carry_out(self, work: RoomWork) -> None:
        """Idempotent, so a record read again after a restart changes nothing: a session is put
        out only while LiveKit still has it (the same sid: not a newer connection of the device),
        and closing a room that is gone is no error."""
        room = room_name(work.call)
        for attempt in range(1, ROOM_ATTEMPTS + 1):
            try:
                if work.close:
                    await self._rooms.delete_room(room)
                elif work.remove:
                    present = {p.identity: p.sid for p in await self._rooms.list_participants(room)}
                    for session in work.remove:
                        who = identity(session.user, session.device)
                        if present.get(who) == session.sid:
                            await self._rooms.remove_participant(room, who)
                return
            except Unavailable as err:
                if attempt == ROOM_ATTEMPTS:
                    log.error("LiveKit did not take the work on %s (%s); giving up", room, err.message)
                    return
                await asyncio.sleep(ROOM_RETRY_S * attempt)
            except ParleyError as err:  # LiveKit refused it: a deployment or code defect, not worth a retry
                log.error("LiveKit refused the work on %s: %s", room, err.message)
                return

    # ---- ring timers ----------------------------------------------------------------------

    async def _ring(self) -> None:
        await self._rearm()
        while True:
            self._armed.clear()
            for call, conv in self._timers.due(_now_ms()):
                try:
                    await self._publish(conv, F.CallRingTimeout(rid=self._rid(), call=call))
                except Unavailable as err:  # the timer fires again shortly
                    log.warning("ring timeout of %s not published: %s", call, err.message)
            next_at = self._timers.next_at()
            try:
                async with asyncio.timeout(None if next_at is None else max(0.0, (next_at - _now_ms()) / 1000)):
                    await self._armed.wait()
            except TimeoutError:
                pass

    async def _rearm(self) -> None:
        """Every call that rings, from the store: its timer may have been armed by a process that
        is gone, or its `call.ringing` read before the last commit."""
        while True:
            now = _now_ms()
            try:
                ringing = await self._store.ringing_calls(now - RING_LOOKBACK_MS, now + self._ring_timeout_ms + 60_000)
            except Unavailable as err:
                await wait_out(err, log, "calls: ring timers")
                continue
            for found in ringing:
                self._timers.arm(found.call, found.conv, found.deadline)
            log.info("%d ring timers armed from the store", len(ringing))
            return

    # ---- the sweep for lost webhooks --------------------------------------------------------

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval_s)
            try:
                await self.sweep()
            except Unavailable as err:  # LiveKit or the log is away: the next sweep tries again
                log.warning("the sweep of the calls' rooms stopped: %s", err.message)
            except ParleyError as err:  # LiveKit refused: a deployment or code defect
                log.error("LiveKit refused the sweep of the calls' rooms: %s", err.message)

    async def sweep(self) -> None:
        """Tell the writer of each call active for the grace what LiveKit has of its room. A
        room read as gone is not swept again (the writer ends its call, or it had ended)."""
        rooms = set(await self._rooms.list_rooms())
        for call in self._swept.due(rooms, _now_ms(), self._sweep_grace_ms):
            conv = conv_of_call(call)
            room = room_name(call)
            exists = room in rooms
            sids: tuple[str, ...] = ()
            if exists:
                sids = tuple(sorted(p.sid for p in await self._rooms.list_participants(room)
                                    if parse_identity(p.identity) is not None))
            else:
                self._swept.forget(call)
            if conv:
                await self._publish(conv, F.CallReconcile(rid=self._rid(), event=F.RoomListed(
                    call=call, exists=exists, sids=sids)))

    # ---- commands -------------------------------------------------------------------------

    def _rid(self) -> str:
        return f"{self._name}-{next(self._rids)}"

    async def _publish(self, conv: str, body: F.WriteRequest) -> None:
        await self._commands.publish(Command(conv, ACTOR, self._name, ACTOR, body))
