"""The miss path: when Redis has no document, ask Postgres once and remember the answer.

However many requests miss the same username at once, one query runs (they all
await it); the usernames missed in one turn of the event loop are read in one
transaction and written back in one call (`TickBatcher`), at most one such
read per pool connection at a time: misses arriving while every connection
reads join the next read. A burst of misses (a deployment's first minute, a
flood of made-up names) makes bigger reads, not a longer queue; beyond the
pool's `max_waiting` usernames waiting, a miss is refused at once (a 503,
`tick_batch.Overloaded`). The answers are written back through
the store's version check, so a NOT_FOUND becomes a short negative cache and a
late answer never overwrites a newer projection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from psycopg import AsyncConnection, IsolationLevel
from psycopg_pool import AsyncConnectionPool

from shared.model.document import StatusDocument
from shared.model.rules import QueuePosition
from shared.postgres.connect import connection_options
from shared.postgres.snapshots import Snapshot, UsernamesReader, count_position, read_tolerating_bad_values
from shared.postgres.types import register_loaders
from shared.redis_store.store import StatusStore
from shared.redis_store.tick_batch import TaskSender, TickBatcher

log = logging.getLogger(__name__)


async def _configure(conn: AsyncConnection) -> None:
    register_loaders(conn)
    await conn.set_isolation_level(IsolationLevel.REPEATABLE_READ)
    await conn.set_read_only(True)


def make_pool(database_url: str, size: int, max_waiting: int = 0) -> AsyncConnectionPool:
    """A small pool, opened lazily: the API must start, and serve hits, without Postgres.

    `max_waiting` bounds the requests queued for a connection (0: unbounded); one
    more fails at once (`psycopg_pool.TooManyRequests`, a 503), so a flood of
    misses for made-up names cannot pile up behind the few connections.
    """
    return AsyncConnectionPool(
        database_url,
        min_size=0,
        max_size=size,
        max_waiting=max_waiting,
        open=False,
        configure=_configure,
        timeout=5.0,
        kwargs={"application_name": "profile-status-api", **connection_options(database_url)},
    )


class Unprojectable(Exception):
    """A username's rows were read but make no document (the projector quarantines them too)."""


class ReadThrough:
    """Resolves misses (the usernames of a turn together, see the module) and positions from Postgres."""

    def __init__(self, pool: AsyncConnectionPool, store: StatusStore, timeout_s: float = 5.0) -> None:
        self.pool = pool
        self.store = store
        # Bounds a request that has to ask Postgres (Redis calls are bounded by the socket timeout).
        self.timeout_s = timeout_s
        self._inflight: dict[str, asyncio.Future[StatusDocument]] = {}
        self._loads: TaskSender[str, StatusDocument | Unprojectable] = TaskSender(self._load_many)
        # One read per pool connection at a time: misses arriving meanwhile make the next read bigger.
        self._batch = TickBatcher(self._loads, max_in_flight=pool.max_size, max_waiting=pool.max_waiting or None)

    async def aclose(self) -> None:
        """End the reads still running (before the pool closes)."""
        await self._loads.aclose()

    async def document(self, username: str) -> StatusDocument:
        """The document of `username` from Postgres, stored in Redis on the way back."""
        pending = self._inflight.get(username)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[StatusDocument] = asyncio.get_running_loop().create_future()
        self._inflight[username] = future
        try:
            doc = await self._load(username)
            future.set_result(doc)
            return doc
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here, so an unawaited future does not warn
            raise
        finally:
            del self._inflight[username]

    async def _load(self, username: str) -> StatusDocument:
        doc = await self._batch.get(username)
        if isinstance(doc, Unprojectable):
            raise doc
        log.info("read through", extra={"event": "read_through", "username": username, "state": doc.state.value})
        return doc

    async def _load_many(self, usernames: Sequence[str]) -> list[StatusDocument | Unprojectable]:
        async with self.pool.connection() as conn:

            async def read(rows: UsernamesReader) -> Snapshot:
                async with conn.transaction():
                    return await rows(conn, usernames)

            snap = await read_tolerating_bad_values(read)
        projections = snap.projections(datetime.now(UTC))
        await self.store.write(projections)
        docs = {p.document.username: p.document for p in projections}
        return [docs[name] if name in docs else Unprojectable(snap.failures.get(name, "no document")) for name in usernames]

    async def position(self, doc: StatusDocument) -> QueuePosition | None:
        """The job's position counted in Postgres, while Redis cannot rank it yet."""
        entry = doc.queue
        if entry is None or entry.queue_member is None:
            return None
        async with self.pool.connection() as conn, conn.transaction():
            ahead, total = await count_position(conn, entry.id)
        return QueuePosition(ahead=ahead, total=total)
