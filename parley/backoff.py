"""Waiting out a dependency that said `Unavailable`, the one way every loop does it; and waiting
for work to drain at shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from parley.errors import Unavailable

#: When the dependency did not say how long to wait.
DEFAULT_WAIT_MS = 1000


async def wait_out(err: Unavailable, log: logging.Logger, what: str) -> None:
    """Log that `what` waits, then sleep for as long as `err` asks."""
    wait_ms = err.retry_after_ms or DEFAULT_WAIT_MS
    log.warning("%s waits %d ms: %s", what, wait_ms, err.message)
    await asyncio.sleep(wait_ms / 1000)


async def drain(busy: Callable[[], bool], timeout_s: float, every_s: float = 0.02) -> None:
    """Return once `busy()` is false, or after `timeout_s` whatever it says."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while busy() and loop.time() < deadline:
        await asyncio.sleep(every_s)
