"""Room passwords at the gateway: attempts are counted per user and per room before anything is
hashed, and the command carries the hash a password matched, never the password."""

from __future__ import annotations

import pytest

from gateway.room_passwords import RoomPasswords
from parley import frames as F
from parley.errors import RateLimited
from parley.ratelimit import Limiter
from parley.records import ConvRow, MemberRow


class CountingPasswords:
    """argon2's stand-in: counts the hashing it is asked for."""

    def __init__(self) -> None:
        self.calls = 0

    def hash(self, password: str) -> str:
        self.calls += 1
        return f"hash({password})"

    def verify(self, hashed: str, password: str) -> bool:
        self.calls += 1
        return hashed == f"hash({password})"


class OneRoom:
    """The store's membership read, for one password room; `members` are in it already."""

    def __init__(self, password_hash: str | None = "hash(open sesame)", members: tuple[str, ...] = ()) -> None:
        self.row = ConvRow(id="room", kind="group", title=None, visibility="public", password_hash=password_hash,
                           history="joined", owner="o", created_at=0)
        self.members = members

    async def membership(self, conv: str, user: str) -> tuple[ConvRow, MemberRow | None] | None:
        if conv != "room":
            return None
        member = MemberRow(conv=conv, user=user, role="member", visible_from=1, read_seq=0, joined_at=0)
        return self.row, member if user in self.members else None


def checker(store: OneRoom, passwords: CountingPasswords, per_user: int = 3, per_room: int = 100) -> RoomPasswords:
    return RoomPasswords(store, passwords, Limiter("room password", per_user, 60),  # type: ignore[arg-type]
                         Limiter("room password per room", per_room, 60), threads=1, queue_max=8)


def join(password: str | None, conv: str = "room") -> F.ConvJoin:
    return F.ConvJoin(rid="j", conv=conv, password=password)


async def test_guesses_past_the_limit_are_refused_before_any_hashing():
    passwords = CountingPasswords()
    rooms = checker(OneRoom(), passwords, per_user=3)
    for n in range(3):
        bare, matched = await rooms.join("mallory", join(f"guess {n}"))
        assert matched is None and bare.password is None
    for n in range(50):
        with pytest.raises(RateLimited) as refused:
            await rooms.join("mallory", join(f"guess {n}"))
        assert refused.value.retry_after_ms is not None and refused.value.retry_after_ms > 0
    assert passwords.calls == 3
    # The count is per user: someone else still gets their attempts.
    assert (await rooms.join("alice", join("open sesame")))[1] == "hash(open sesame)"
    rooms.close()


async def test_a_room_counts_the_attempts_of_all_users_together():
    passwords = CountingPasswords()
    rooms = checker(OneRoom(), passwords, per_user=100, per_room=5)
    for n in range(5):
        await rooms.join(f"bot{n}", join("guess"))
    with pytest.raises(RateLimited):
        await rooms.join("bot9", join("guess"))
    assert passwords.calls == 5
    rooms.close()


async def test_only_a_password_the_room_needs_is_checked():
    passwords = CountingPasswords()
    rooms = checker(OneRoom(members=("bob",)), passwords)
    assert await rooms.join("alice", join(None)) == (join(None), None)  # no password: nothing counted
    assert (await rooms.join("bob", join("anything")))[1] is None  # a member already
    assert (await rooms.join("alice", join("x", conv="elsewhere")))[1] is None  # no such room
    assert passwords.calls == 0
    rooms.close()


async def test_a_new_room_password_is_hashed_in_the_pool():
    passwords = CountingPasswords()
    rooms = checker(OneRoom(), passwords)
    assert await rooms.hash("open sesame") == "hash(open sesame)" and passwords.calls == 1
    rooms.close()
