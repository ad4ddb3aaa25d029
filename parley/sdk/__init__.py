"""The asyncio client SDK for the Parley v1 protocol: REST accounts and attachments, and one
WebSocket session that can outlive its sockets. Tests, the benchmark and bots all speak the
protocol through it.

    transport.py   the seam: HTTP requests and WebSockets (aiohttp by default, or an app in-process)
    rest.py        register, login, refresh, logout, my sessions, password, upload, attachment, calls
                   for bots (start_call, call_action)
    connection.py  one WebSocket: hello, frames out and in
    session.py     Client: requests by rid, reconnect with backoff, resend, recovery sync
    catchup.py     the watermark a sync asks from, and delivering each message once
    events.py      decoding incoming frames, and the events a user reads

Every refusal raises the `parley.errors` class of its wire code (Forbidden carries `rule`,
RateLimited and Unavailable `retry_after_ms`).
"""

from parley.sdk.events import EventHook, Frame
from parley.sdk.rest import (
    Account, attachment, call_action, change_password, list_sessions, login, logout, logout_everywhere, refresh,
    register, revoke_session, start_call, upload,
)
from parley.sdk.session import Client
from parley.sdk.transport import AiohttpTransport, AppTransport, HttpResponse, Transport, WebSocket

__all__ = [
    "Account",
    "AiohttpTransport",
    "AppTransport",
    "Client",
    "EventHook",
    "Frame",
    "HttpResponse",
    "Transport",
    "WebSocket",
    "attachment",
    "call_action",
    "change_password",
    "list_sessions",
    "login",
    "logout",
    "logout_everywhere",
    "refresh",
    "register",
    "revoke_session",
    "start_call",
    "upload",
]
