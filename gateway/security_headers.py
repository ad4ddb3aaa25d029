"""The headers every gateway response carries, for browsers: the web client (gateway/static) loads
nothing from another origin and runs no inline script, no page may frame it, no type is guessed,
no URL leaks in a Referer. Tokens sit in the web client's localStorage: an injected script or a
framing page is what these headers keep out. A response that sets its own policy keeps it (an
attachment download is sandboxed: parley/mime.py)."""

from __future__ import annotations

from aiohttp import web

CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",  # the favicon is a data: URL
    "connect-src 'self'",  # REST and the WebSocket of this origin only
    "base-uri 'none'",
    "form-action 'none'",  # the client's forms are handled by script, never submitted
    "frame-ancestors 'none'",
))
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


async def add_security_headers(_: web.Request, response: web.StreamResponse) -> None:
    """An `on_response_prepare` signal: it sees every response, static files and errors too."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
