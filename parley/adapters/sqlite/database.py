"""The SQLite file behind every concern of the embedded store: one writer thread and a small
pool of reader threads, each with its own connection.

Writes go through the one writer, one transaction per chat_core batch (group commit: one fsync
acknowledges many commands). Reads run on the readers; WAL lets them read while the writer
commits.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from parley.adapters.sqlite.migrations import migrate
from parley.errors import Unavailable

T = TypeVar("T")
CHUNK = 400  # bound on `?` parameters per statement


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """An explicit transaction: the connections autocommit (isolation_level=None), so `with conn`
    alone would commit each statement on its own."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterable[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def marks(n: int) -> str:
    return ",".join("?" * n)


def rows_by_key(conn: sqlite3.Connection, select: str, keys: Sequence[str]) -> dict[str, list[tuple[Any, ...]]]:
    """The rows of `select` for many keys at once: its first column is the key, `{keys}` stands
    where the `IN (...)` list goes. Each key's rows without it, in the order read; one statement
    per CHUNK distinct keys (so a key's rows all come from one statement, in its ORDER BY)."""
    found: dict[str, list[tuple[Any, ...]]] = {}
    for part in chunks(list(dict.fromkeys(keys))):
        for row in conn.execute(select.format(keys=marks(len(part))), part):
            found.setdefault(row[0], []).append(row[1:])
    return found


class SqliteDatabase:
    """The connections and threads of one SQLite file in WAL mode; `open` creates or upgrades
    its schema (migrations.py)."""

    def __init__(self, path: Path, synchronous: str = "FULL", readers: int = 2) -> None:
        if synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError(f"unsupported sqlite synchronous mode {synchronous!r}")
        self._path = path
        self._synchronous = synchronous
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="sqlite-reader")
        self._local = threading.local()
        self._wconn: sqlite3.Connection | None = None
        self._rconns: list[sqlite3.Connection] = []
        self._closed = False

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute("PRAGMA busy_timeout=10000")
        return conn

    async def open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        await self._write(migrate)

    def _writer_conn(self) -> sqlite3.Connection:
        if self._wconn is None:
            self._wconn = self._connect()
        return self._wconn

    def _reader_conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
            self._rconns.append(conn)
        return conn

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, lambda: fn(self._writer_conn()))

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, lambda: fn(self._reader_conn()))

    async def ping(self) -> None:
        # On a reader thread, as the gateway's reads: it answers when they would. Unlike
        # `SELECT 1`, user_version takes a read transaction on the file (its header).
        try:
            await self._read(lambda conn: conn.execute("PRAGMA user_version").fetchone())
        except (sqlite3.Error, RuntimeError) as exc:  # RuntimeError: closed, its threads are gone
            raise Unavailable(f"store unreachable: {exc}", retry_after_ms=1000) from exc

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._writer.shutdown, True)
        await loop.run_in_executor(None, self._readers.shutdown, True)
        # The pools are idle now, so their connections can be closed from here.
        for conn in [self._wconn, *self._rconns]:
            if conn is not None:
                conn.close()
        self._wconn, self._rconns = None, []
