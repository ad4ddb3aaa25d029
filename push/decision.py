"""Who gets a push for a stored message, and what it says: pure rules, values in and values out.

A member gets a push when they did not send it, have not blocked (and are not blocked by) the
sender, their settings let it through (the conversation's settings win over the account's; a
direct conversation counts every message as a mention; a mute until a time in the future
silences it), and they are not looking: no live session, or none that read this conversation
in the last `looking_window_s` (Mattermost's rule too: someone reading the conversation sees
the message arrive). The badge is the total of the member's unread counts (the stores'
`unread_counts`, by records.unread_count).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from parley.records import Device, NotifySettings

#: The account-wide scope of `DeviceStore.notify_settings`.
ACCOUNT_SCOPE = ""
DEFAULT_SETTINGS = NotifySettings()


def settings_for(stored: Mapping[str, NotifySettings], conv: str) -> NotifySettings:
    """The settings that apply in `conv`: its own, else the account's, else the defaults."""
    return stored.get(conv) or stored.get(ACCOUNT_SCOPE) or DEFAULT_SETTINGS


def allows(settings: NotifySettings, *, mentioned: bool, direct: bool, now_ms: int) -> bool:
    """Whether `settings` let a message through (mentions include every message of a DM)."""
    if settings.mute_until is not None and settings.mute_until > now_ms:
        return False
    if settings.level == "none":
        return False
    return settings.level == "all" or mentioned or direct


def looking(online: bool, last_read_ms: int | None, now_ms: int, window_s: float) -> bool:
    """A member is looking when a session of theirs is live and one read the conversation
    within the window."""
    return online and last_read_ms is not None and now_ms - last_read_ms <= window_s * 1000


@dataclass(frozen=True, slots=True)
class Recipient:
    """A member as the decision sees them for one message."""

    user: str
    settings: NotifySettings
    online: bool
    last_read_ms: int | None


def push_recipients(recipients: Iterable[Recipient], *, sender: str, mentions: Iterable[str], direct: bool,
                    blocked: frozenset[str], now_ms: int, window_s: float) -> list[Recipient]:
    """The members of `recipients` who get a push for a message from `sender`. `blocked`: the
    users the sender blocks or is blocked by."""
    mentioned = set(mentions)
    return [r for r in recipients
            if r.user != sender and r.user not in blocked
            and allows(r.settings, mentioned=r.user in mentioned, direct=direct, now_ms=now_ms)
            and not looking(r.online, r.last_read_ms, now_ms, window_s)]


def live_devices(devices: Iterable[Device], alive_families: frozenset[str]) -> tuple[list[Device], list[Device]]:
    """(devices to push to, devices whose login has ended and are to be deleted)."""
    keep: list[Device] = []
    ended: list[Device] = []
    for device in devices:
        (keep if device.family_id in alive_families else ended).append(device)
    return keep, ended
