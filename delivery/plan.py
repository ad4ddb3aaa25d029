"""Fan-out planning: which gateway gets which users of an event, from one presence lookup.

Pure: values in, values out, so the decisions are tested without a loop or a socket.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def gateways_by_user(located: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Inverts `Presence.locate`'s gateway -> users into user -> gateways, so one lookup over a
    whole batch serves each of its events."""
    where: dict[str, list[str]] = {}
    for gateway, users in located.items():
        for user in users:
            where.setdefault(user, []).append(gateway)
    return where


def route(users: Sequence[str], where: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """gateway -> the `users` it holds, each gateway once, users in the given order."""
    routed: dict[str, list[str]] = {}
    for user in users:
        for gateway in where.get(user, ()):
            routed.setdefault(gateway, []).append(user)
    return routed
