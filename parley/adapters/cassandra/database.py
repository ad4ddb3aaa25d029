"""The cluster behind every concern of the Cassandra store: a CqlSession with a bound on the
requests one process has in flight, and the shapes of request the concerns make (one row, all
rows page by page, a conditional statement, a logged batch)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Iterable, Sequence
from typing import Any, TypeVar

from parley.adapters.cassandra.session import CqlSession, Row
from parley.adapters.cassandra.writes import AuditRows, Statement

T = TypeVar("T")

_IN_FLIGHT = 64  # concurrent requests of one store call
#: Rounds of a compare-and-set loop (report ids, account updates) before giving up.
CAS_ROUNDS = 32
NO_LIMIT = 2**31 - 1
#: Rows per page of the listings read a page at a time (names, invites, reports).
PAGE = 200


class CassandraDatabase:
    """One keyspace through a CqlSession (the driver, or the tests' in-memory model)."""

    def __init__(self, session: CqlSession) -> None:
        self._s = session
        self._limit = asyncio.Semaphore(_IN_FLIGHT)
        #: Audit rows are written by chat_core's batches (PutAudit) and by `append_audit`, from
        #: one clock.
        self._audit_rows = AuditRows()

    async def ping(self) -> None:
        # Not behind the in-flight limit: readiness asks whether the cluster answers, not whether
        # this process is busy.
        await self._s.execute("store_ping", [])

    async def close(self) -> None:
        await self._s.close()

    # ---- plumbing -------------------------------------------------------------------------

    async def _one(self, name: str, params: Sequence[Any]) -> Row | None:
        async with self._limit:
            page = await self._s.execute(name, params)
        return page.rows[0] if page.rows else None

    async def _rows(self, name: str, params: Sequence[Any], fetch_size: int = 1000) -> AsyncGenerator[Row, None]:
        state: bytes | None = None
        while True:
            async with self._limit:
                page = await self._s.execute(name, params, fetch_size=fetch_size, paging_state=state)
            for row in page.rows:
                yield row
            if page.paging_state is None:
                return
            state = page.paging_state

    async def _all(self, name: str, params: Sequence[Any]) -> list[Row]:
        return [row async for row in self._rows(name, params)]

    async def _lwt(self, name: str, params: Sequence[Any]) -> bool:
        """One conditional statement: whether it applied (row[0] is `[applied]`)."""
        async with self._limit:
            page = await self._s.execute(name, params)
        return bool(page.rows[0][0])

    async def _batch(self, items: Sequence[Statement], conditional: bool = False) -> list[Row]:
        async with self._limit:
            return await self._s.batch(items, conditional=conditional)

    @staticmethod
    async def _gather(aws: Iterable[Awaitable[T]]) -> list[T]:
        return list(await asyncio.gather(*aws))
