"""WebSocket close codes of the protocol (docs/protocol.md, "WebSocket session", item 6)."""

from enum import IntEnum


class CloseCode(IntEnum):
    NORMAL = 1000
    NOT_UTF8 = 1007  # a text frame that is not UTF-8 (aiohttp closes with it for us)
    TOO_BIG = 1009  # frame over max_frame_bytes (aiohttp closes with it for us)
    NO_HELLO = 4001
    IDLE = 4002
    BAD_TOKEN = 4003
    POLICY = 4008  # banned, or too slow to read after `resync`
    GOING_AWAY = 4009
    TOO_MANY_SESSIONS = 4029  # the user has max_sessions_per_user sessions on this gateway already
