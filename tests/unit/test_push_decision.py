"""Who gets a push for a message (push/decision.py): settings, mentions, DMs, mutes, blocks,
looking, and the badge."""

from __future__ import annotations

from parley.records import ConvRow, Device, MemberRow, NotifySettings
from push.decision import Recipient, allows, live_devices, looking, push_recipients, settings_for, unread_total

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


def test_the_badge_counts_unread_over_all_conversations() -> None:
    def conv(last: int) -> ConvRow:
        return ConvRow(id="c", kind="group", title=None, visibility="private", password_hash=None, history="all",
                       owner="o", created_at=0, last_seq=last)

    def member(read: int, visible_from: int = 1) -> MemberRow:
        return MemberRow(conv="c", user="u", role="member", visible_from=visible_from, read_seq=read, joined_at=0)

    # 3 unread, 0 unread, and 2 of a conversation joined at seq 9 (history before it is not theirs).
    assert unread_total([(conv(10), member(7)), (conv(4), member(4)), (conv(10), member(0, visible_from=9))]) == 5


def test_devices_of_ended_logins_are_set_apart() -> None:
    def device(device_id: str, family: str) -> Device:
        return Device(id=device_id, user_id="u", family_id=family, platform="fcm", token=device_id, app_id="a",
                      locale="en", created_at=0)
    keep, ended = live_devices([device("d1", "f1"), device("d2", "gone")], frozenset({"f1"}))
    assert [d.id for d in keep] == ["d1"] and [d.id for d in ended] == ["d2"]
