"""`parley admin loadtest-users`: load-test accounts in bulk, with their tokens written to a file.

Registering through the API spends one argon2 hash per account (~10/s per core); 100k accounts
would take hours. These accounts get no password at all: their stored hash is empty, which no
password verifies (as a guest's), so a password login to one is impossible and only the tokens
written here work. Each account gets a login session (parley/session_families.py), so its
token is checked and revocable like any other; the access token lives `--ttl-s` (a day by
default: a load test outlives the 15-minute default and the Locust client does not refresh), and
the refresh token is written too. A shared hash of a known password would have been as fast but would let
anyone who knows it log in as any of them. Refused unless the instance allows it
(PARLEY_ALLOW_LOADTEST_USERS=1, off by default), and audited as actor "cli".
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
import sys
from pathlib import Path

from parley.accounts import now_ms
from parley.app.stores import open_store
from parley.auth import USERNAME_RE, Tokens, load_or_create_secret
from parley.config import Settings
from parley.ids import new_user_id
from parley.ports import Store
from parley.records import Account, AuditEntry
from parley.session_families import Logins, Revoker

#: What a load-test account stores as its password hash: verifies no password.
NO_PASSWORD = ""
#: Accounts created at once: enough to keep a Cassandra cluster busy; SQLite writes them in turn.
CONCURRENCY = 64
DEFAULT_PREFIX = "lt"
#: The access tokens' lifetime unless --ttl-s says otherwise: longer than any load test.
DEFAULT_TTL_S = 24 * 3600
LOGIN_LABEL = "load test"


def usernames(prefix: str, count: int) -> list[str]:
    """`prefix-<run>-<n>`: a random run tag, so a second batch never collides with the first."""
    run = secrets.token_hex(3)
    names = [f"{prefix}-{run}-{n}" for n in range(count)]
    if names and not USERNAME_RE.match(names[-1]):
        raise ValueError(f"prefix {prefix!r} makes names like {names[-1]!r}, which are not valid usernames")
    return names


async def create_accounts(store: Store, logins: Logins, names: list[str]) -> list[dict[str, str]]:
    """The accounts and a login session each, CONCURRENCY at a time; returns {user_id, username,
    token, refresh_token} per account."""

    async def one(name: str, at: int) -> dict[str, str]:
        user_id = new_user_id()
        await store.create_user(user_id, name, NO_PASSWORD, at)
        pair = await logins.start(Account(id=user_id, username=name, created_at=at), LOGIN_LABEL)
        return {"user_id": user_id, "username": name, "token": pair.token, "refresh_token": pair.refresh_token}

    made: list[dict[str, str]] = []
    for start in range(0, len(names), CONCURRENCY):
        at = now_ms()
        made.extend(await asyncio.gather(*(one(name, at) for name in names[start:start + CONCURRENCY])))
    return made


async def loadtest_users(settings: Settings, count: int, out: Path, prefix: str, ttl_s: int | None) -> int:
    """The command: refuse unless allowed, create, write the file, audit. Returns the exit code."""
    if not settings.allow_loadtest_users:
        print("parley admin loadtest-users: refused: this instance does not allow load-test accounts "
              "(set PARLEY_ALLOW_LOADTEST_USERS=1 on a load-test instance only)", file=sys.stderr)
        return 1
    if count < 1:
        print("parley admin loadtest-users: --count must be at least 1", file=sys.stderr)
        return 2
    try:
        names = usernames(prefix, count)
    except ValueError as err:
        print(f"parley admin loadtest-users: {err}", file=sys.stderr)
        return 2
    ttl_s = ttl_s or DEFAULT_TTL_S
    if ttl_s >= settings.sessions.refresh_ttl_s:
        print(f"parley admin loadtest-users: --ttl-s must be shorter than PARLEY_REFRESH_TTL_S "
              f"({settings.sessions.refresh_ttl_s})", file=sys.stderr)
        return 2
    secret = settings.jwt_secret or load_or_create_secret(settings.data_dir)
    # An account lost to a power cut is made again by the next run: no fsync per account
    # (3,000+/s on SQLite instead of ~400/s).
    store = await open_store(dataclasses.replace(settings, sqlite_synchronous="NORMAL"))
    try:
        logins = Logins(store, Tokens(secret, ttl_s), settings.sessions.refresh_ttl_s, Revoker(store))
        accounts = await create_accounts(store, logins, names)
        await store.append_audit([AuditEntry(
            at=now_ms(), actor="cli", action="loadtest.users", target=accounts[0]["user_id"],
            details={"count": count, "first": names[0], "last": names[-1], "out": str(out)})])
    finally:
        await store.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(accounts))
    tmp.chmod(0o600)  # bearer tokens
    tmp.replace(out)
    print(f"created {count} load-test accounts {names[0]} .. {names[-1]}; tokens in {out}")
    return 0
