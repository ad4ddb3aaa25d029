"""How every benchmark process runs: on uvloop, with the open-files limit raised, and with its
progress on stderr (the report itself goes to stdout at the end)."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import sys
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

#: Nanoseconds per second: the schedule runs on CLOCK_MONOTONIC in ns, which every process shares.
NS = 1_000_000_000
T = TypeVar("T")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def raise_nofile() -> None:
    """Soft open-files limit up to the hard cap: one socket per session on each side."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run_loop(coro: Coroutine[Any, Any, T]) -> T:
    """uvloop when installed (it is a dependency of parley), else asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)
