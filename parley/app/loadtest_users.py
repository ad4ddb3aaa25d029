"""`parley admin loadtest-users`: load-test accounts in bulk, with their tokens written to a file.

Registering through the API spends one argon2 hash per account (~10/s per core); 100k accounts
would take hours. These accounts get no password at all: their stored hash is empty, which no
password verifies (as a guest's), so a password login to one is impossible and only the tokens
written here work. A shared hash of a known password would have been as fast but would let
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
from parley.records import AuditEntry

#: What a load-test account stores as its password hash: verifies no password.
NO_PASSWORD = ""
#: Accounts created at once: enough to keep a Cassandra cluster busy; SQLite writes them in turn.
CONCURRENCY = 64
DEFAULT_PREFIX = "lt"


def usernames(prefix: str, count: int) -> list[str]:
    """`prefix-<run>-<n>`: a random run tag, so a second batch never collides with the first."""
    run = secrets.token_hex(3)
    names = [f"{prefix}-{run}-{n}" for n in range(count)]
    if names and not USERNAME_RE.match(names[-1]):
        raise ValueError(f"prefix {prefix!r} makes names like {names[-1]!r}, which are not valid usernames")
    return names


async def create_accounts(store: Store, tokens: Tokens, names: list[str], ttl_s: int) -> list[dict[str, str]]:
    """The accounts, created CONCURRENCY at a time; returns {user_id, username, token} per account."""
    made: list[dict[str, str]] = []
    for start in range(0, len(names), CONCURRENCY):
        batch = [(new_user_id(), name) for name in names[start:start + CONCURRENCY]]
        at = now_ms()
        await asyncio.gather(*(store.create_user(user_id, name, NO_PASSWORD, at) for user_id, name in batch))
        made.extend({"user_id": user_id, "username": name, "token": tokens.issue(user_id, ttl_s=ttl_s)}
                    for user_id, name in batch)
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
    secret = settings.jwt_secret or load_or_create_secret(settings.data_dir)
    tokens = Tokens(secret, settings.token_ttl_s)
    # An account lost to a power cut is made again by the next run: no fsync per account
    # (3,000+/s on SQLite instead of ~400/s).
    store = await open_store(dataclasses.replace(settings, sqlite_synchronous="NORMAL"))
    try:
        accounts = await create_accounts(store, tokens, names, ttl_s or settings.token_ttl_s)
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
