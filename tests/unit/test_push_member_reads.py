"""The push decision's reads of a message's members (delivery/push_decider.py): their settings,
devices, logins and accounts are read in one batched call each when their cache entries are
missing or expired, so a message to 500 members costs as many store calls as one to 5."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import pytest

from delivery.push_decider import MEMBER_CACHE_S, PushDecider, reachable_devices_of
from parley.frames import Message
from parley.records import Account, ConvRow, Device, MemberRow, NotifySettings, SessionFamily
from push.notification import PushRequest

FAR = 2**62
SENDER = "sender"
MUTED = "m2"  # level none: no push
LOGGED_OUT = "m1"  # a second device, of a login revoked since: deleted, not pushed


def device(device_id: str, user: str, family: str) -> Device:
    return Device(id=device_id, user_id=user, family_id=family, platform="fcm", token="t-" + device_id,
                  app_id="chat.parley", locale="en", created_at=0)


def family(family_id: str, user: str, revoked_at: int | None = None) -> SessionFamily:
    return SessionFamily(id=family_id, user_id=user, created_at=0, last_used_at=0, expires_at=FAR, label="phone",
                         token_gen=0, revoked_at=revoked_at)


class CountingStore:
    """A conversation of `size` members besides the sender, each with one phone, and the number
    of calls of each store method."""

    def __init__(self, size: int) -> None:
        self.calls: Counter[str] = Counter()
        self.members = [f"m{i}" for i in range(size)]
        self.conv = ConvRow(id="c1", kind="group", title="Ops", visibility="private", password_hash=None,
                            history="all", owner=SENDER, created_at=0, last_seq=1)
        self.devices = [device("d-" + u, u, "f-" + u) for u in self.members]
        self.devices.append(device("old-" + LOGGED_OUT, LOGGED_OUT, "gone"))
        self.families = {u: [family("f-" + u, u)] for u in self.members}
        self.families[LOGGED_OUT].append(family("gone", LOGGED_OUT, revoked_at=1))
        self.deleted: list[tuple[str, str]] = []

    async def conv_members(self, conv: str) -> tuple[ConvRow, list[MemberRow]]:
        self.calls["conv_members"] += 1
        return self.conv, [MemberRow(conv="c1", user=u, role="member", visible_from=1, read_seq=0, joined_at=0)
                           for u in [SENDER, *self.members]]

    async def block_peers(self, user: str) -> set[str]:
        self.calls["block_peers"] += 1
        return set()

    async def notify_settings_of(self, user_ids: Sequence[str]) -> list[dict[str, NotifySettings]]:
        self.calls["notify_settings_of"] += 1
        return [{"": NotifySettings(level="none")} if u == MUTED else {} for u in user_ids]

    async def devices_of(self, user_ids: Sequence[str]) -> list[list[Device]]:
        self.calls["devices_of"] += 1
        return [[d for d in self.devices if d.user_id == u] for u in user_ids]

    async def session_families_of(self, user_ids: Sequence[str]) -> list[list[SessionFamily]]:
        self.calls["session_families_of"] += 1
        return [self.families.get(u, []) for u in user_ids]

    async def accounts(self, user_ids: Sequence[str]) -> list[Account]:
        self.calls["accounts"] += 1
        return [Account(id=u, username=u, created_at=0) for u in dict.fromkeys(user_ids)]

    async def delete_device(self, user_id: str, device_id: str) -> bool:
        self.calls["delete_device"] += 1
        self.deleted.append((user_id, device_id))
        self.devices = [d for d in self.devices if d.id != device_id]
        return True

    async def unread_counts(self, users: Sequence[str]) -> list[int]:
        self.calls["unread_counts"] += 1
        return [1 for _ in users]


class Nobody:
    """Presence with nobody online."""

    async def locate(self, users: Sequence[str]) -> dict[str, list[str]]:
        return {}


class Out:
    def __init__(self) -> None:
        self.requests: list[PushRequest] = []

    async def publish_many(self, items: Sequence[PushRequest]) -> None:
        self.requests += items


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def message(seq: int) -> Message:
    return Message(conv="c1", seq=seq, sender=SENDER, ts=0, cmid=f"cm{seq}", text="hi")


def decider(store: CountingStore, clock: Clock) -> PushDecider:
    return PushDecider(store, Nobody(), Out(), window_s=20, clock=clock)  # type: ignore[arg-type]


async def cold_decision(size: int) -> tuple[Counter[str], list[str]]:
    """The store calls and the pushed devices of one message to `size` members, cache cold."""
    store = CountingStore(size)
    pushes = await decider(store, Clock()).message_pushes(message(1))
    return store.calls, [p.device_id for p in pushes]


async def test_a_message_to_500_members_with_a_cold_cache_makes_as_many_store_calls_as_one_to_5() -> None:
    small, small_pushed = await cold_decision(5)
    large, large_pushed = await cold_decision(500)
    assert large == small
    # one batched read each of settings, devices and logins; accounts: the reachability check and
    # the sender's name; one delete (the logged-out device)
    assert large == Counter(conv_members=1, block_peers=1, notify_settings_of=1, devices_of=1, session_families_of=1,
                            accounts=2, unread_counts=1, delete_device=1)
    assert large_pushed == [f"d-m{i}" for i in range(500) if f"m{i}" != MUTED]
    assert small_pushed == ["d-m0", "d-m1", "d-m3", "d-m4"]


async def test_members_cached_are_not_read_again_until_the_cache_time_is_over_then_all_in_one_go() -> None:
    store, clock = CountingStore(50), Clock()
    decide = decider(store, clock)
    await decide.message_pushes(message(1))
    store.calls.clear()
    clock.now += MEMBER_CACHE_S / 2
    assert len(await decide.message_pushes(message(2))) == 49
    member_reads = ("notify_settings_of", "devices_of", "session_families_of")
    assert [store.calls[m] for m in member_reads] == [0, 0, 0]
    clock.now += MEMBER_CACHE_S
    assert len(await decide.message_pushes(message(3))) == 49
    assert [store.calls[m] for m in member_reads] == [1, 1, 1]


@pytest.mark.parametrize("users", [["m0", LOGGED_OUT, "nobody", "m0"], []])
async def test_reachable_devices_of_many_users_are_theirs_in_order_and_ended_logins_devices_deleted(
        users: list[str]) -> None:
    store = CountingStore(3)
    found = await reachable_devices_of(store, users, now_ms=5_000)  # type: ignore[arg-type]
    expected = {"m0": ["d-m0"], LOGGED_OUT: ["d-" + LOGGED_OUT], "nobody": []}
    assert [[d.id for d in devices] for devices in found] == [expected[u] for u in users]
    assert store.deleted == ([(LOGGED_OUT, "old-" + LOGGED_OUT)] if users else [])
