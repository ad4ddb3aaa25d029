"""The push decision: a stage beside delivery that reads the same stored events and writes a
push request to `parley.push` (keyed by user) for each device of each member who should hear of
a new message and is not looking (the rules: push/decision.py). A read on any device sends the
reader's other devices a clearing update (the badge, and removal of what was shown).

It keeps two things in memory, both per conversation and so safe with a partitioned log (one
consumer sees all of a conversation's events): when each member last read each conversation
(whether they are looking), and which (member, conversation) got a push not yet cleared. After
a restart the first is empty (a member who is reading may get one push) and the second too (a
read then clears nothing: the next message's push carries the right badge).

Calls: `call.ringing` rings each callee's phones whether or not they are looking (FCM: a
high-priority data message; iOS: the PushKit token, or the ordinary one when the user has none);
the callee answering or declining (`call.accepted`, `call.declined`) stops their phones, and the
ring ending (`call.ringing` with nobody left ringing, `call.ended`) stops everyone's still
ringing, with a `call_cancel` push of the same call; a callee moderation took out of the
ringing call (`call.left`, removed) stops too. A callee whose ring ended without an answer (the
ring timed out, or the call ended first: the caller hung up, everyone else left) missed the call
and gets a push like a message's ("Missed call from NAME", kind `message` with the call's id),
under the same rules as a message that mentions them: their settings (level, mute, previews), not
when they are looking, collapsing per conversation. The call's record (a message of kind `call`)
pushes nothing itself: the callees who missed the call heard of it so, and to the others it is no
news. The call events are decoded here from the wire (only the fields used).

Which callees still ring is kept in memory, by call (delivery/call_rings.py), and survives a
restart through the store: the ring of a call this decision did not see start (it restarted, or
the call's partition moved to it) is rebuilt from the stored call at its first event, and the
store says who still rings when a ring starts or ends, so that events read again after a restart
(older than the store) ring nobody who answered since and tell nobody who answered they missed
the call. A cancel sent again is skipped by the push worker (the same dedup key).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Generic, Protocol, TypeVar

import msgspec

from delivery.call_rings import Ring, recovered, ring_end, still_ringing
from parley.accounts import family_alive
from parley.events import MessageNew, ReadReceipt
from parley.frames import Message
from parley.backoff import wait_out
from parley.errors import Unavailable
from parley.ports import (AccountStore, CallStore, DeviceStore, LogConsumer, LogProducer, MessageStore, Presence,
                          SessionStore)
from parley.records import ConvRow, Device, EventRecord, NotifySettings
from push.decision import Recipient, live_devices, push_recipients, settings_for
from push.notification import CallMedia, Platform, PushKind, PushRequest

log = logging.getLogger(__name__)

#: (member, conversation) pairs remembered for "last read" and "pushed, not cleared".
TRACKED_MAX = 200_000
#: How long the decision keeps a member's settings and reachable devices: a busy conversation
#: asks for the same members' many times a second. A change (a new device, a mute, a logout)
#: applies within this time.
MEMBER_CACHE_S = 2.0
#: Which platforms take which pushes: a PushKit (VoIP) token takes calls only.
MESSAGE_PLATFORMS: frozenset[str] = frozenset({"fcm", "apns"})


class _Head(msgspec.Struct):
    """The type of an event frame, read before decoding the events the decision takes."""

    type: str


_head = msgspec.json.Decoder(_Head)
_message_new = msgspec.json.Decoder(MessageNew)
_read = msgspec.json.Decoder(ReadReceipt)


class _CallEvent(msgspec.Struct):
    """The fields of the call events (`call.*`, calls/state.py) the decision reads."""

    call: str
    conv: str
    type: str
    media: str | None = None
    initiator: str | None = None
    ringing: list[str] = []
    user: str | None = None


_call_event = msgspec.json.Decoder(_CallEvent)
#: The call events that ring, stop a callee's ring or end the ring: the others (`call.joined`, and
#: the calls role's room work `call.room`, which shares the log) push nothing.
_CALL_PUSH_EVENTS = frozenset({"call.ringing", "call.accepted", "call.declined", "call.left", "call.ended"})


#: (title, body) of a message push, from the sender's display name.
PushText = Callable[[str], tuple[str | None, str | None]]


class _Bounded(OrderedDict[tuple[str, str], int]):
    """Least recently set entries go first past TRACKED_MAX."""

    def put(self, key: tuple[str, str], value: int) -> None:
        self[key] = value
        self.move_to_end(key)
        if len(self) > TRACKED_MAX:
            self.popitem(last=False)


class DevicesAndLogins(AccountStore, SessionStore, DeviceStore, Protocol):
    """The store concerns that tell which devices are still reachable."""


class PushStore(MessageStore, DevicesAndLogins, CallStore, Protocol):
    """The store concerns a decision reads."""


async def reachable_devices(store: DevicesAndLogins, user: str, now_ms: int) -> list[Device]:
    """The user's devices whose login is still alive (reachable_devices_of)."""
    [found] = await reachable_devices_of(store, [user], now_ms)
    return found


async def reachable_devices_of(store: DevicesAndLogins, users: Sequence[str], now_ms: int) -> list[list[Device]]:
    """Each user's devices whose login is still alive, in the order asked; the others are deleted
    on the way (the login ended by logout, revocation or expiry, and a device ends with it). Three
    store reads for any number of users: everyone's devices, then the logins and accounts of
    those who have any."""
    devices = await store.devices_of(users)
    held = {u: found for u, found in zip(users, devices) if found}
    if not held:
        return devices
    holders = list(held)
    families, accounts = await asyncio.gather(store.session_families_of(holders), store.accounts(holders))
    account_of = {a.id: a for a in accounts}
    reachable: dict[str, list[Device]] = {}
    ended: list[Device] = []
    for user, found in zip(holders, families):
        alive = frozenset(f.id for f in found if family_alive(f, account_of.get(user), now_ms))
        reachable[user], gone = live_devices(held[user], alive)
        ended += gone
    await asyncio.gather(*(store.delete_device(d.user_id, d.id) for d in ended))
    return [reachable.get(u, []) for u in users]


T = TypeVar("T")


class _MemberCache(Generic[T]):
    """A value per user read from the store, each kept MEMBER_CACHE_S from its read. The users
    missing or expired are read together: a message to 500 members whose entries all expire at
    once costs one batched read, not 500."""

    def __init__(self, clock: Callable[[], float],
                 read: Callable[[list[str], float], Awaitable[list[T]]]) -> None:
        self._clock = clock
        #: (users, now) -> their values, in that order.
        self._read = read
        self._entries: dict[str, tuple[float, T]] = {}

    async def get(self, users: Sequence[str]) -> list[T]:
        """The value of each of `users`, in order."""
        now = self._clock()
        found: dict[str, T] = {}
        missing: list[str] = []
        for user in dict.fromkeys(users):
            cached = self._entries.get(user)
            if cached is None or cached[0] < now:
                missing.append(user)
            else:
                found[user] = cached[1]
        if missing:
            for user, value in zip(missing, await self._read(missing, now)):
                found[user] = value
                self._entries[user] = (now + MEMBER_CACHE_S, value)
            self._forget_expired(now)
        return [found[u] for u in users]

    def _forget_expired(self, now: float) -> None:
        """Drops expired entries once the cache is past TRACKED_MAX, so it stays bounded."""
        if len(self._entries) > TRACKED_MAX:
            for key in [k for k, (until, _) in self._entries.items() if until < now]:
                del self._entries[key]


class PushDecider:
    def __init__(self, store: PushStore, presence: Presence, out: LogProducer[PushRequest], *,
                 window_s: float, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._presence = presence
        self._out = out
        self._window_s = window_s
        self._clock = clock
        self._last_read = _Bounded()
        self._pushed = _Bounded()
        self._settings = _MemberCache[dict[str, NotifySettings]](
            clock, lambda users, _now: store.notify_settings_of(users))
        #: Calls by id: their ring by push, or None once nothing of it rings (delivery/call_rings.py).
        self._rings: OrderedDict[str, Ring | None] = OrderedDict()
        self._devices = _MemberCache[list[Device]](
            clock, lambda users, now: reachable_devices_of(store, users, int(now * 1000)))

    async def run(self, source: LogConsumer[EventRecord], batch_max: int = 1024) -> None:
        """Decides each batch of the event log, then commits it: what was not committed is
        decided again after a crash (a push request written twice is sent once: push/marks.py)."""
        while True:
            try:
                await self.decide(await source.next_batch(batch_max))
                await source.commit()
            except Unavailable as err:
                await wait_out(err, log, "push decision")

    async def decide(self, records: Sequence[EventRecord]) -> None:
        """The push requests for a batch of stored events, in log order, written to the log.
        A failure of one event costs only that event's pushes (logged)."""
        requests: list[PushRequest] = []
        for record in records:
            try:
                requests += await self._for_record(record)
            except Unavailable:
                raise  # the store or presence is away: the batch is decided again
            except Exception:
                log.exception("push decision for an event of %s failed", record.conv)
        if requests:
            await self._out.publish_many(requests)

    async def _for_record(self, record: EventRecord) -> list[PushRequest]:
        kind = _head.decode(record.frame).type
        if kind == "message.new":
            return await self.message_pushes(_message_new.decode(record.frame).message)
        if kind == "read":
            read = _read.decode(record.frame)
            return await self.clear_pushes(read.user, read.conv)
        if kind in _CALL_PUSH_EVENTS:
            return await self.call_pushes(_call_event.decode(record.frame))
        return []

    async def call_pushes(self, event: _CallEvent) -> list[PushRequest]:
        """A ring for the callees' phones; its cancel for those no longer ringing; a missed-call
        push for those whose ring ended unanswered."""
        if event.type == "call.ringing" and event.ringing:
            callees = [u for u in event.ringing if u != event.initiator]
            self._remember(event.call, Ring(event.initiator or "", set(callees)))
            title = await self._name(event.initiator or "")
            media: CallMedia = "video" if event.media == "video" else "audio"
            return [PushRequest(user=d.user_id, device_id=d.id, platform=_platform(d), token=d.token, app_id=d.app_id,
                                conv=event.conv, seq=0, kind="call", title=title, call_id=event.call,
                                call_media=media, decided_ms=int(self._clock() * 1000))
                    for devices in await self._devices.get(still_ringing(callees, await self._store.call(event.call)))
                    for d in _ringable(devices)]
        ring = await self._ring_of(event.call)
        if ring is None:
            return []
        missed: frozenset[str] = frozenset()
        if event.type in ("call.accepted", "call.declined", "call.left") and event.user is not None:
            # Answered, declined (or busy), or taken out by moderation: not missed.
            stop = frozenset({event.user} & ring.rung)
            ring.rung -= stop
        elif event.type in ("call.ringing", "call.ended"):  # nobody rings any more: who still rang missed it
            self._rings[event.call] = None
            end = ring_end(ring, await self._store.call(event.call), ended=event.type == "call.ended")
            stop, missed = end.cancel, end.missed
        else:
            return []
        now_ms = int(self._clock() * 1000)
        cancels = [PushRequest(user=d.user_id, device_id=d.id, platform=_platform(d), token=d.token, app_id=d.app_id,
                               conv=event.conv, seq=0, kind="call_cancel", call_id=event.call, decided_ms=now_ms)
                   for devices in await self._devices.get(sorted(stop)) for d in _ringable(devices)]
        return cancels + await self.missed_call_pushes(event.conv, event.call, ring.initiator, missed)

    async def _ring_of(self, call: str) -> Ring | None:
        """The ring of `call`; of a call this decision did not see start (it restarted, or the
        call's partition moved to it), rebuilt from the store, once."""
        if call in self._rings:
            return self._rings[call]
        ring = recovered(await self._store.call(call))
        self._remember(call, ring)
        return ring

    def _remember(self, call: str, ring: Ring | None) -> None:
        self._rings[call] = ring
        self._rings.move_to_end(call)
        while len(self._rings) > TRACKED_MAX:
            self._rings.popitem(last=False)

    async def missed_call_pushes(self, conv_id: str, call: str, initiator: str,
                                 missed: frozenset[str]) -> list[PushRequest]:
        """Pushes like a message's, to the members of `missed` (rung, never answered) who should
        hear of it: the call was meant for each of them, so it counts as a mention. Its seq is the
        conversation's latest (the call's record, when the call ended unanswered)."""
        found = await self._store.conv_members(conv_id) if missed else None
        if found is None:
            return []
        conv, members = found
        still = [m.user for m in members if m.user in missed]  # who left the conversation since: none
        return await self._notify(conv, still, sender=initiator, mentions=still, seq=conv.last_seq,
                                  text=lambda name: (conv.title, f"Missed call from {name}"), call_id=call)

    async def message_pushes(self, message: Message) -> list[PushRequest]:
        if message.deleted or message.kind == "call":  # a call's record: see the module
            return []
        found = await self._store.conv_members(message.conv)
        if found is None:
            return []
        conv, members = found
        return await self._notify(conv, [m.user for m in members if m.user != message.sender], sender=message.sender,
                                  mentions=message.mentions, seq=message.seq,
                                  text=lambda name: (f"{name} in {conv.title}" if conv.title else name, message.text),
                                  stored_ms=message.ts)

    async def _notify(self, conv: ConvRow, candidates: list[str], *, sender: str, mentions: Iterable[str], seq: int,
                      text: PushText, stored_ms: int | None = None, call_id: str | None = None) -> list[PushRequest]:
        """Message pushes about `seq` of `conv` from `sender` to the devices of those of
        `candidates` the rules choose (push/decision.py)."""
        if not candidates:
            return []
        now_ms = int(self._clock() * 1000)
        blocked, stored, located = await asyncio.gather(
            self._store.block_peers(sender),
            self._settings.get(candidates),
            self._presence.locate(candidates))
        online = {u for users in located.values() for u in users}
        chosen = push_recipients(
            (Recipient(u, settings_for(s, conv.id), u in online, self._last_read.get((u, conv.id)))
             for u, s in zip(candidates, stored)),
            sender=sender, mentions=mentions, direct=conv.kind == "direct",
            blocked=frozenset(blocked), now_ms=now_ms, window_s=self._window_s)
        if not chosen:
            return []
        title, body = text(await self._name(sender))
        requests: list[PushRequest] = []
        for recipient, (devices, badge) in zip(chosen, await self._reach([r.user for r in chosen])):
            for device in devices:
                if device.platform in MESSAGE_PLATFORMS:
                    requests.append(_request(device, conv.id, seq, "message", badge=badge, title=title, body=body,
                                             previews=recipient.settings.previews, stored_ms=stored_ms,
                                             decided_ms=now_ms, call_id=call_id))
            if devices:
                self._pushed.put((recipient.user, conv.id), seq)
        return requests

    async def clear_pushes(self, user: str, conv: str) -> list[PushRequest]:
        """After `user` read `conv`: remember it (they are looking), and clear what was pushed."""
        self._last_read.put((user, conv), int(self._clock() * 1000))
        seq = self._pushed.pop((user, conv), None)
        if seq is None:
            return []
        [(devices, badge)] = await self._reach([user])
        now_ms = int(self._clock() * 1000)
        return [_request(d, conv, seq, "clear", badge=badge, decided_ms=now_ms)
                for d in devices if d.platform in MESSAGE_PLATFORMS]

    async def _reach(self, users: Sequence[str]) -> list[tuple[list[Device], int]]:
        """Each user's devices of logins still alive and, for those who have any, their badge
        (one store read for them all)."""
        devices = await self._devices.get(users)
        badges = iter(await self._store.unread_counts([u for u, d in zip(users, devices) if d]))
        return [(d, next(badges) if d else 0) for d in devices]

    async def _name(self, user: str) -> str:
        """What a push calls `user`: their display name, else their username."""
        accounts = await self._store.accounts([user])
        return (accounts[0].display_name or accounts[0].username) if accounts else user


def _platform(device: Device) -> Platform:
    return "apns_voip" if device.platform == "apns_voip" else "apns" if device.platform == "apns" else "fcm"


def _ringable(devices: list[Device]) -> list[Device]:
    """The devices a call rings: Android's, and an iPhone's PushKit token (its ordinary token
    only when it registered none: iOS then shows an alert instead of the call screen)."""
    voip = any(d.platform == "apns_voip" for d in devices)
    return [d for d in devices if d.platform != "apns" or not voip]


def _request(device: Device, conv: str, seq: int, kind: PushKind, *, badge: int, title: str | None = None,
             body: str | None = None, previews: bool = True, stored_ms: int | None = None,
             decided_ms: int, call_id: str | None = None) -> PushRequest:
    return PushRequest(user=device.user_id, device_id=device.id, platform=_platform(device), token=device.token,
                       app_id=device.app_id, conv=conv, seq=seq, kind=kind,
                       title=title, body=body, badge=badge, previews=previews, call_id=call_id,
                       priority="normal" if kind == "clear" else "high", stored_ms=stored_ms, decided_ms=decided_ms)
