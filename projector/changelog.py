"""The change log that the triggers write (see `sql/002_change_capture_v1.sql`).

The only module of the projector that speaks SQL of its own; rows themselves are
read through `shared.truth`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from psycopg import AsyncConnection

CHANNEL = "profile_status_v1"


@dataclass(frozen=True, slots=True)
class Change:
    """One entry of the log: a username (None: every username) changed at `changed_at`."""

    id: int
    username: str | None
    changed_at: datetime


async def listen(conn: AsyncConnection) -> None:
    """Subscribe an autocommit connection to the change channel."""
    await conn.execute(f"LISTEN {CHANNEL}")


async def notify_probe(conn: AsyncConnection) -> None:
    """Send ourselves an empty notification, to prove the listener still receives."""
    await conn.execute("SELECT pg_notify(%s, '')", (CHANNEL,))


async def next_batch(
    conn: AsyncConnection, limit: int, partitions: list[int] | None = None, of: int = 1
) -> list[Change]:
    """The oldest `limit` entries naming a username (of the given partitions, out of `of`).

    A late-committing transaction's entries simply show up in a later batch.
    """
    if partitions is None:
        cur = await conn.execute(
            "SELECT id, username, changed_at FROM profile_status_changes_v1"
            " WHERE username IS NOT NULL ORDER BY id LIMIT %s",
            (limit,),
        )
    else:
        cur = await conn.execute(
            "SELECT id, username, changed_at FROM profile_status_changes_v1"
            # bigint before abs(): abs() of the smallest int4 overflows (one username in 2^32 would wedge its partition).
            " WHERE username IS NOT NULL AND mod(abs(hashtext(username)::bigint), %s) = ANY(%s) ORDER BY id LIMIT %s",
            (of, partitions, limit),
        )
    return [Change(*row) for row in await cur.fetchall()]


async def truncations(conn: AsyncConnection) -> list[int]:
    """Entries that stand for every username (a TRUNCATE): answered by a full rebuild."""
    cur = await conn.execute("SELECT id FROM profile_status_changes_v1 WHERE username IS NULL ORDER BY id")
    return [row[0] for row in await cur.fetchall()]


async def forget(conn: AsyncConnection, ids: Sequence[int]) -> None:
    """Delete applied entries, so the log holds only what is still to do."""
    if ids:
        await conn.execute("DELETE FROM profile_status_changes_v1 WHERE id = ANY(%s)", (list(ids),))


async def backlog(conn: AsyncConnection) -> tuple[int, float]:
    """(entries waiting, age in seconds of the oldest) for operators and metrics."""
    cur = await conn.execute(
        "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - min(changed_at)), 0)"
        " FROM profile_status_changes_v1"
    )
    count, age = await cur.fetchone() or (0, 0)
    return int(count), float(age)
