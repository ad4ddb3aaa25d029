"""Who gets a push for a message (push/decision.py): settings, mentions, DMs, mutes, blocks,
looking, and the badge."""

from __future__ import annotations

from parley.records import Device, NotifySettings, unread_count
from push.decision import Recipient, allows, live_devices, looking, push_recipients, settings_for

NOW = 1_000_000


def recipient(user: str, level: str = "all", *, online: bool = False, read_ms: int | None = None,
              mute_until: int | None = None) -> Recipient:
    return Recipient(user, NotifySettings(level=level, mute_until=mute_until), online, read_ms)


def chosen(recipients: list[Recipient], *, mentions: tuple[str, ...] = (), direct: bool = False,
           blocked: frozenset[str] = frozenset()) -> list[str]:
    return [r.user for r in push_recipients(recipients, sender="s", mentions=mentions, direct=direct,
                                            blocked=blocked, now_ms=NOW, window_s=20)]


def test_the_conversation_settings_win_over_the_account_and_the_defaults() -> None:
    account, conv = NotifySettings(level="mentions"), NotifySettings(level="none")
    assert settings_for({"": account, "c1": conv}, "c1") == conv
    assert settings_for({"": account, "c1": conv}, "c2") == account
    assert settings_for({}, "c1") == NotifySettings()


def test_levels_mentions_and_direct_conversations() -> None:
    assert allows(NotifySettings(level="all"), mentioned=False, direct=False, now_ms=NOW)
    assert not allows(NotifySettings(level="mentions"), mentioned=False, direct=False, now_ms=NOW)
    assert allows(NotifySettings(level="mentions"), mentioned=True, direct=False, now_ms=NOW)
    assert allows(NotifySettings(level="mentions"), mentioned=False, direct=True, now_ms=NOW)  # a DM is a mention
    assert not allows(NotifySettings(level="none"), mentioned=True, direct=True, now_ms=NOW)


def test_a_mute_lasts_until_its_time() -> None:
    assert not allows(NotifySettings(mute_until=NOW + 1), mentioned=True, direct=True, now_ms=NOW)
    assert allows(NotifySettings(mute_until=NOW), mentioned=False, direct=False, now_ms=NOW)


def test_looking_needs_a_live_session_and_a_recent_read() -> None:
    assert looking(True, NOW - 20_000, NOW, 20)
    assert not looking(True, NOW - 20_001, NOW, 20)
    assert not looking(True, None, NOW, 20)
    assert not looking(False, NOW, NOW, 20)  # no live session: the read was on a phone now in a pocket


def test_the_sender_the_blocked_the_silenced_and_the_looking_get_no_push() -> None:
    members = [recipient("s"), recipient("offline"), recipient("reading", online=True, read_ms=NOW - 5_000),
               recipient("online-elsewhere", online=True, read_ms=NOW - 60_000), recipient("blocked"),
               recipient("quiet", "mentions"), recipient("muted", mute_until=NOW + 60_000)]
    assert chosen(members, blocked=frozenset({"blocked"})) == ["offline", "online-elsewhere"]
    assert "quiet" in chosen(members, mentions=("quiet",))


def test_a_conversation_counts_what_came_after_the_cursor_and_the_members_history() -> None:
    assert unread_count(10, 7, 1) == 3
    assert unread_count(4, 4, 1) == 0 and unread_count(4, 6, 1) == 0  # never negative
    assert unread_count(10, 0, 9) == 2  # joined at seq 9: history before it is not theirs


def test_devices_of_ended_logins_are_set_apart() -> None:
    def device(device_id: str, family: str) -> Device:
        return Device(id=device_id, user_id="u", family_id=family, platform="fcm", token=device_id, app_id="a",
                      locale="en", created_at=0)
    keep, ended = live_devices([device("d1", "f1"), device("d2", "gone")], frozenset({"f1"}))
    assert [d.id for d in keep] == ["d1"] and [d.id for d in ended] == ["d2"]
