"""Names on the wire between services: Kafka topics, NATS subjects, Redis keys. One home each."""

from __future__ import annotations

# ---- Kafka (keyed by conversation id: one conversation lives on one partition) -----------
COMMANDS = "parley.commands"
EVENTS = "parley.events"
PUSH = "parley.push"
#: Push requests still refused by their provider after the last retry (push/retry.py).
PUSH_DEAD = "parley.push.dead"

CHAT_CORE_GROUP = "parley.chat-core"
DELIVERY_GROUP = "parley.delivery"
#: The calls role reads `parley.events` too: ring timers and the work in LiveKit's rooms.
CALLS_GROUP = "parley.calls"
#: The push role's two consumers: the decision reads the events, the sender the push requests.
PUSH_DECISION_GROUP = "parley.push-decision"
PUSH_GROUP = "parley.push-sender"

# ---- NATS ----------------------------------------------------------------------------------
GATEWAY_SUBJECT_PREFIX = "parley.gw."
CONV_SUBJECT_PREFIX = "parley.conv."


def gateway_subject(gateway_id: str) -> str:
    """Everything for the sessions one gateway holds: replies and events for listed users."""
    return GATEWAY_SUBJECT_PREFIX + gateway_id


def conv_subject(conv_id: str) -> str:
    """Events of a very large conversation, published once; gateways holding a member subscribe."""
    return CONV_SUBJECT_PREFIX + conv_id


# ---- Redis ---------------------------------------------------------------------------------
PRESENCE_KEY_PREFIX = "parley:presence:"   # + user id -> set of gateway ids
GATEWAY_ALIVE_PREFIX = "parley:gw:"        # + gateway id -> heartbeat key with TTL
MEMBERS_KEY_PREFIX = "parley:members:"     # + conv id -> cached member list
MEMBER_COUNT_KEY_PREFIX = "parley:members-n:"  # + conv id -> its length (read without the list)
RATE_LIMIT_PREFIX = "parley:rl"            # prefix handed to the `limits` Redis storage
PUSH_SENT_PREFIX = "parley:push:sent:"     # + PushRequest.dedup_key() -> a settled push, with a TTL
