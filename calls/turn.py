"""ICE servers for a call: STUN URLs as configured, and TURN URLs with short-lived credentials in
coturn's REST scheme (`use-auth-secret`): the username is `expiry:user` (unix seconds) and the
password base64(HMAC-SHA1(secret, username)), so coturn checks them with the shared secret
alone: Parley stores nothing, and a credential stops working at its expiry."""

from __future__ import annotations

import base64
import hashlib
import hmac

import msgspec


class IceServer(msgspec.Struct, frozen=True, omit_defaults=True):
    """One entry of WebRTC's `iceServers` (RTCIceServer), as clients pass it on."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None


def turn_credentials(secret: str, user: str, *, now_s: int, ttl_s: int) -> tuple[str, str]:
    """(username, password) valid until `now_s + ttl_s`."""
    username = f"{now_s + ttl_s}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_servers(*, stun_urls: tuple[str, ...], turn_urls: tuple[str, ...], turn_secret: str | None, user: str,
                now_s: int, ttl_s: int) -> tuple[IceServer, ...]:
    servers: list[IceServer] = []
    if stun_urls:
        servers.append(IceServer(urls=stun_urls))
    if turn_urls:
        if turn_secret is None:
            raise ValueError("TURN URLs need the TURN secret")
        username, password = turn_credentials(turn_secret, user, now_s=now_s, ttl_s=ttl_s)
        servers.append(IceServer(urls=turn_urls, username=username, credential=password))
    return tuple(servers)
