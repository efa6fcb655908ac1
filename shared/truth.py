"""Reading what Postgres says now: rows for some usernames, or for all, at one snapshot.

The projector, the API's miss path and `verify` all read through here, and turn
rows into documents with the same pure rules (`shared.rules`).
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

from shared.rows import PROFILE_COLUMNS, QUEUE_COLUMNS, ProfileRow, QueueRow
from shared.rules import priority_rank, project_with_members, snapshot_version
from shared.store import Projection

STREAM_CHUNK_ROWS = 5000

_SNAPSHOT_VERSION = (
    "SELECT pg_snapshot_xmax(s)::text::bigint, "
    "(SELECT count(*) FROM pg_snapshot_xip(s)) FROM pg_current_snapshot() AS s"
)
_POSITION = """
SELECT count(*) FILTER (
           WHERE (CASE priority WHEN 'HIGH' THEN 0 WHEN 'MEDIUM' THEN 1 ELSE 2 END,
                  COALESCE(timestamp, '-infinity'::timestamptz), id)
               < (%(rank)s, COALESCE(%(ts)s::timestamptz, '-infinity'::timestamptz), %(id)s::uuid)),
       count(*)
FROM queue WHERE status IN ('PENDING', 'PROCESSING')
"""


@dataclass(slots=True)
class UsernameRows:
    """Every row, in any letter case, of one normalized username."""

    profiles: list[ProfileRow] = field(default_factory=list)
    queue: list[QueueRow] = field(default_factory=list)


@dataclass
class Snapshot:
    """Rows of some usernames as one Postgres snapshot saw them."""

    version: int
    rows: dict[str, UsernameRows]

    def projections(self, projected_at: datetime) -> list[Projection]:
        """Documents and active queue members for every username read."""
        version = self.version
        with collector_paused():
            return [
                Projection(*project_with_members(name, r.profiles, r.queue, version=version, projected_at=projected_at))
                for name, r in self.rows.items()
            ]


@contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off for a burst of allocation that creates no cycles.

    Projecting a chunk allocates several objects per username, all kept and none
    in a cycle. Each 700 allocations start a collection; the survivors soon set
    off full ones, which scan the whole heap: a third of a rebuild's projection
    time went there, finding nothing. Paused, the next allocation after the
    chunk starts one young collection instead. The previous state is restored.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


async def current_version(conn: AsyncConnection) -> int:
    """The version of the snapshot the current transaction reads from."""
    cur = await conn.execute(_SNAPSHOT_VERSION)
    xmax, in_progress = await cur.fetchone() or (0, 0)
    return snapshot_version(int(xmax), int(in_progress))


async def read_usernames(conn: AsyncConnection, usernames: Iterable[str]) -> Snapshot:
    """Rows of `usernames` (normalized) in the current transaction's snapshot.

    Run it in a REPEATABLE READ transaction so that the version and the rows
    come from the same snapshot.
    """
    names = sorted(set(usernames))
    snap = Snapshot(await current_version(conn), {n: UsernameRows() for n in names})
    cur = await conn.execute(
        f"SELECT lower(username), {PROFILE_COLUMNS} FROM primary_profiles"
        " WHERE lower(username) = ANY(%s)",
        (names,),
    )
    for key, *values in await cur.fetchall():
        snap.rows[key].profiles.append(ProfileRow(*values))
    cur = await conn.execute(
        f"SELECT lower(username), {QUEUE_COLUMNS} FROM queue WHERE lower(username) = ANY(%s)",
        (names,),
    )
    for key, *values in await cur.fetchall():
        snap.rows[key].queue.append(QueueRow(*values))
    return snap


@dataclass(frozen=True, slots=True)
class Part:
    """One of `count` disjoint parts of all usernames, by a hash of the name (for parallel rebuilds)."""

    index: int
    count: int


async def stream_all(
    conn: AsyncConnection, chunk: int = STREAM_CHUNK_ROWS, part: Part | None = None
) -> AsyncIterator[Snapshot]:
    """Every username Postgres knows (or those of one `part`), in chunks, all from the transaction's one snapshot.

    Two server-side cursors ordered by username are merged, so memory stays at
    one chunk however large the tables are. Run inside a REPEATABLE READ transaction.
    """
    version = await current_version(conn)
    profiles = _ordered(conn, "profiles", ProfileRow, PROFILE_COLUMNS, "primary_profiles", chunk, part)
    queue = _ordered(conn, "queue_rows", QueueRow, QUEUE_COLUMNS, "queue", chunk, part)
    pending: dict[str, UsernameRows] = {}
    async for name, rows in _merge(profiles, queue):
        pending[name] = rows
        if len(pending) >= chunk:
            yield Snapshot(version, pending)
            pending = {}
    if pending:
        yield Snapshot(version, pending)


async def _ordered(
    conn: AsyncConnection, name: str, row_type: type, columns: str, table: str, chunk: int, part: Part | None
) -> AsyncIterator[tuple[str, Any]]:
    where, params = "", ()
    if part is not None:
        # bigint before abs(): abs() of the smallest int4 overflows.
        where, params = " WHERE mod(abs(hashtext(lower(username))::bigint), %s) = %s", (part.count, part.index)
    # COLLATE "C" sorts by bytes, the order Python compares the keys in.
    async with conn.cursor(name=f"profile_status_{name}") as cur:
        cur.itersize = chunk
        await cur.execute(
            f'SELECT lower(username) COLLATE "C" AS k, {columns} FROM {table}{where} ORDER BY k', params
        )
        async for key, *values in cur:
            yield key, row_type(*values)


async def _merge(
    profiles: AsyncIterator[tuple[str, ProfileRow]], queue: AsyncIterator[tuple[str, QueueRow]]
) -> AsyncIterator[tuple[str, UsernameRows]]:
    """Group two username-ordered row streams into one stream of usernames."""
    p = await anext(profiles, None)
    q = await anext(queue, None)
    while p is not None or q is not None:
        name = min(item[0] for item in (p, q) if item is not None)
        rows = UsernameRows()
        while p is not None and p[0] == name:
            rows.profiles.append(p[1])
            p = await anext(profiles, None)
        while q is not None and q[0] == name:
            rows.queue.append(q[1])
            q = await anext(queue, None)
        yield name, rows


async def count_position(
    conn: AsyncConnection, priority: str | None, timestamp: datetime | None, row_id: str
) -> tuple[int, int]:
    """(rows ahead, active rows) for one active row, counted in Postgres.

    The slow path, for when Redis cannot answer a position yet (the projection is
    being rebuilt); one indexed count.
    """
    cur = await conn.execute(
        _POSITION, {"rank": priority_rank(priority), "ts": timestamp, "id": row_id}
    )
    ahead, total = await cur.fetchone() or (0, 0)
    return int(ahead), int(total)


async def count_usernames(conn: AsyncConnection) -> int:
    """How many distinct usernames the two tables hold (for progress bars)."""
    cur = await conn.execute(
        "SELECT count(*) FROM (SELECT lower(username) FROM queue"
        " UNION SELECT lower(username) FROM primary_profiles) AS names"
    )
    row = await cur.fetchone()
    await conn.rollback()
    return int(row[0]) if row else 0
