"""The protocol's frames as a client builds and reads them, with no I/O and no event loop: the
asyncio SDK (connection.py, session.py) and the gevent load generator (loadtests/locust) both
speak through this module, so there is one client-side encoding of the protocol, not one per
client. Importing it pulls in neither asyncio nor aiohttp (parley/sdk/__init__.py is lazy).
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from parley.errors import ParleyError, error_for_code

#: A decoded JSON object: a frame, an event, a REST body.
Frame = dict[str, Any]

WS_PATH = "/v1/ws"


def json_object(data: bytes | str) -> Frame | None:
    """A JSON object, or None for anything else (the caller decides how bad that is)."""
    try:
        value = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return None
    return value if isinstance(value, dict) else None


def decode_frame(data: bytes | str) -> Frame | None:
    """An incoming WebSocket frame (a reply or an event); None for one that is not a JSON object."""
    return json_object(data)


def encode_frame(frame: Frame) -> bytes:
    """The text frame's payload of an outgoing request."""
    return msgspec.json.encode(frame)


def ws_url(base_url: str) -> str:
    """The protocol's WebSocket URL on the server at `base_url` (http(s):// or ws(s)://)."""
    base = base_url.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[len("https://") :]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://") :]
    return base + WS_PATH


def new_cmid() -> str:
    """A client message id: the server de-duplicates a re-sent `send` by it."""
    return uuid.uuid4().hex


def hello_frame(rid: str, token: str, device_id: str | None = None) -> Frame:
    frame: Frame = {"op": "hello", "rid": rid, "token": token}
    if device_id is not None:
        frame["device_id"] = device_id
    return frame


def send_frame(rid: str, conv: str, text: str, cmid: str | None = None, **extra: Any) -> Frame:
    return {"op": "send", "rid": rid, "conv": conv, "cmid": cmid or new_cmid(), "text": text, **extra}


def sync_frame(rid: str, since: dict[str, int]) -> Frame:
    return {"op": "sync", "rid": rid, "since": dict(since)}


def reply_rid(frame: Frame) -> str | None:
    """The rid of an `ok` or `error` reply; None for an event or a rid-less error."""
    rid = frame.get("rid")
    return rid if frame.get("op") in ("ok", "error") and isinstance(rid, str) else None


def error_from_frame(frame: Frame) -> ParleyError:
    """The ParleyError an `error` frame carries."""
    retry = frame.get("retry_after_ms")
    rule = frame.get("rule")
    return error_for_code(
        str(frame.get("code", "internal")),
        str(frame.get("message", "")),
        retry if isinstance(retry, int) else None,
        rule=rule if isinstance(rule, str) else None,
    )
