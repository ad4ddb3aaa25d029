"""Fan-out planning: which events go once on their conversation's subject, and which gateway
gets which users of the others, from one presence lookup.

Pure: values in, values out, so the decisions are tested without a loop or a socket.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from parley.records import EventRecord


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


def on_conv_subject(record: EventRecord, recipients: int, min_members: int) -> bool:
    """Whether a stored event goes once on its conversation's subject instead of per gateway:
    an event for exactly the members of a conversation of at least `min_members` (0: never).
    Events for chosen users (`to`), for people besides the members (`also`: someone who just
    left) and membership changes (the gateways of whoever joined or left must hear of it, to
    start or stop following) go per gateway."""
    return (min_members > 0 and record.to is None and not record.also and not record.members_changed
            and recipients >= min_members)
