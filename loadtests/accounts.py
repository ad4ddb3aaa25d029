"""The users and groups a run needs: registered through the API (argon2 makes that slow, so they
are cached on a kept data dir, and a later run refreshes their logins instead) and groups of
consecutive users made with conv.create.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp

from loadtests.runtime import log
from loadtests.slices import ignore_events
from parley.errors import ParleyError, Unauthorized
from parley.sdk import Account, AiohttpTransport, Client, login, refresh, register

PASSWORD = "bench-password-1"
ACCOUNTS_FILE = "bench-accounts.json"


class AccountCache:
    """Accounts registered on a kept data dir, so a rerun skips argon2. Their access tokens have
    expired by then: `register_users` refreshes each login first (and saves the new tokens: a
    refresh token is good once)."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self.accounts: list[Account] = []
        if path is not None and path.exists():
            self.accounts = [Account(**a) for a in json.loads(path.read_text())]

    def save(self) -> None:
        if self._path is not None:
            self._path.write_text(json.dumps([a.__dict__ for a in self.accounts]))


async def renew_logins(url: str, cache: AccountCache, concurrency: int) -> None:
    """Fresh tokens for every cached account: a refresh, or a login where the refresh token is
    gone (a cache from before refresh tokens, a login unused for the refresh lifetime)."""
    gate = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def one(account: Account) -> Account:
            async with gate:
                via = AiohttpTransport(http)
                if account.refresh_token is not None:
                    try:
                        return await refresh(url, account, transport=via)
                    except Unauthorized:
                        pass
                return await login(url, account.username, PASSWORD, transport=via)

        cache.accounts = list(await asyncio.gather(*(one(a) for a in cache.accounts)))
    cache.save()


async def register_users(url: str, n: int, cache: AccountCache, concurrency: int) -> float:
    """Renew the cached logins, then register until the cache holds n accounts; returns seconds
    spent."""
    if cache.accounts:
        await renew_logins(url, cache, concurrency)
    missing = n - len(cache.accounts)
    if missing <= 0:
        return 0.0
    prefix = "b" + secrets.token_hex(3)
    gate = asyncio.Semaphore(concurrency)
    started = time.monotonic()
    done = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def one(i: int) -> Account:
            nonlocal done
            async with gate:
                for attempt in range(5):
                    try:
                        account = await register(url, f"{prefix}-{i}", PASSWORD, transport=AiohttpTransport(http))
                        break
                    except ParleyError as err:
                        if err.code not in ("rate_limited", "unavailable") or attempt == 4:
                            raise
                        await asyncio.sleep((err.retry_after_ms or 500) / 1000)
                done += 1
                if done % 500 == 0:
                    log(f"registered {done}/{missing} users ({done / (time.monotonic() - started):.0f}/s)")
                return account

        made = await asyncio.gather(*(one(i) for i in range(missing)), return_exceptions=True)
    # Keep what was registered even if some failed: the next run registers only the rest.
    cache.accounts.extend(a for a in made if isinstance(a, Account))
    cache.save()
    failed = [e for e in made if isinstance(e, BaseException)]
    if failed:
        raise RuntimeError(f"{len(failed)} registrations failed, e.g. {failed[0]!r}")
    return time.monotonic() - started


async def create_groups(url: str, accounts: Sequence[Account], size: int) -> tuple[list[tuple[str, list[int]]], float]:
    """Groups of `size` consecutive accounts; the first member creates each with conv.create."""
    started = time.monotonic()
    plan = [list(range(i, min(i + size, len(accounts)))) for i in range(0, len(accounts), size)]
    gate = asyncio.Semaphore(32)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def one(members: list[int]) -> str:
            async with gate:
                creator = accounts[members[0]]
                async with await Client.connect(url, creator.token, transport=AiohttpTransport(http), heartbeat=False,
                                                on_event=ignore_events) as client:
                    reply = await client.request(
                        "conv.create", timeout=60.0, kind="group", title=f"bench {members[0]}",
                        members=[accounts[m].user_id for m in members[1:]])
                    return str(reply["conv"]["id"])

        convs = await asyncio.gather(*(one(m) for m in plan))
    return list(zip(convs, plan)), time.monotonic() - started
