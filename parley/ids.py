"""Opaque ids: random for users, sessions, groups and attachments; derived for direct chats."""

from __future__ import annotations

import base64
import hashlib
import secrets

from aiokafka.partitioner import murmur2


def _b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode().rstrip("=").lower()


def new_id(prefix: str) -> str:
    """`prefix` + 80 random bits (16 base32 chars)."""
    return prefix + _b32(secrets.token_bytes(10))


def new_user_id() -> str:
    return new_id("u")


def new_conv_id() -> str:
    return new_id("c")


def new_attachment_id() -> str:
    return new_id("a")


def new_session_id() -> str:
    return new_id("s")


#: Between a call id's conversation and its own part; conversation ids never contain it.
_CALL_SEPARATOR = "-"


def new_call_id(conv: str) -> str:
    """A call id carries its conversation, so a command about the call (a webhook's, a REST
    caller's) finds the conversation's writer without a lookup."""
    return f"{conv}{_CALL_SEPARATOR}{new_id('k')}"


def conv_of_call(call_id: str) -> str:
    """The conversation a call id names ("" for an id that names none: its writer finds no call)."""
    conv, sep, own = call_id.rpartition(_CALL_SEPARATOR)
    return conv if sep and own else ""


def direct_conv_id(a: str, b: str) -> str:
    """The one direct conversation of a pair, whoever creates it: both sides derive the same id,
    so concurrent creates land on the same partition and the single writer dedupes them."""
    lo, hi = sorted((a, b))
    return "d" + _b32(hashlib.sha256(f"{lo}\x00{hi}".encode()).digest()[:15])


def partition_of(conv: str, partitions: int) -> int:
    """The log partition (and outbox shard) of a conversation: Kafka's default partitioner on
    the conversation key, so the chat_core that consumes a partition owns its outbox shard."""
    if partitions == 1:
        return 0
    return (murmur2(conv.encode()) & 0x7FFFFFFF) % partitions
