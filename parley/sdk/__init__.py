"""The asyncio client SDK for the Parley v1 protocol: REST accounts and attachments, and one
WebSocket session that can outlive its sockets. Tests, the benchmark and bots all speak the
protocol through it.

    wire.py        frames as a client builds and reads them (no I/O, no loop: the Locust load
                   generator, on gevent, shares it)
    transport.py   the seam: HTTP requests and WebSockets (aiohttp by default, or an app in-process)
    rest.py        register, login, refresh, logout, my sessions, password, upload, attachment, calls
                   for bots (start_call, call_action)
    devices.py     push: the caller's devices and notification settings
    connection.py  one WebSocket: hello, frames out and in
    session.py     Client: requests by rid, reconnect with backoff, resend, recovery sync
    catchup.py     the watermark a sync asks from, and delivering each message once
    events.py      the events a user reads

Every refusal raises the `parley.errors` class of its wire code (Forbidden carries `rule`,
RateLimited and Unavailable `retry_after_ms`).

The names below are imported on first use, so that `parley.sdk.wire` and `parley.sdk.catchup`
can be imported without asyncio and aiohttp (gevent's load generator must not load them).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from parley.sdk.devices import (
        AllNotificationSettings, NotificationSettings, PushDevice, delete_device, follow_account_settings,
        list_devices, notification_settings, register_device, set_notification_settings,
    )
    from parley.sdk.events import EventHook
    from parley.sdk.rest import (
        Account, attachment, call_action, change_password, list_sessions, login, logout, logout_everywhere,
        refresh, register, revoke_session, start_call, upload,
    )
    from parley.sdk.session import Client
    from parley.sdk.transport import AiohttpTransport, AppTransport, HttpResponse, Transport, WebSocket
    from parley.sdk.wire import Frame

#: name -> the module that defines it.
_HOMES = {
    "Account": "rest", "attachment": "rest", "change_password": "rest", "list_sessions": "rest", "login": "rest",
    "logout": "rest", "logout_everywhere": "rest", "refresh": "rest", "register": "rest", "revoke_session": "rest",
    "upload": "rest", "start_call": "rest", "call_action": "rest",
    "AllNotificationSettings": "devices", "NotificationSettings": "devices", "PushDevice": "devices",
    "delete_device": "devices", "follow_account_settings": "devices", "list_devices": "devices",
    "notification_settings": "devices", "register_device": "devices", "set_notification_settings": "devices",
    "AiohttpTransport": "transport", "AppTransport": "transport", "HttpResponse": "transport",
    "Transport": "transport", "WebSocket": "transport",
    "Client": "session", "EventHook": "events", "Frame": "wire",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'parley.sdk' has no attribute {name!r}")
    return getattr(importlib.import_module(f"parley.sdk.{home}"), name)
