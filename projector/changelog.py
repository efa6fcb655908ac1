"""The change log that the triggers write (see `sql/002_change_capture_v1.sql`).

The only module of the projector that speaks SQL of its own; rows themselves are
read through `shared.postgres.snapshots`. Functions are named with their schema
and parameters carry their types, so a role that may create functions in a
schema on our search path cannot slip a closer match in (see docs/security.md).
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
    await conn.execute("SELECT pg_catalog.pg_notify(%s::text, '')", (CHANNEL,))


async def next_batch(
    conn: AsyncConnection, limit: int, partitions: list[int] | None = None, of: int = 1
) -> list[Change]:
    """The oldest `limit` entries naming a username (of the given partitions, out of `of`).

    A late-committing transaction's entries simply show up in a later batch.
    """
    if partitions is None:
        cur = await conn.execute(
            "SELECT id, username, changed_at FROM profile_status_changes_v1"
            " WHERE username IS NOT NULL ORDER BY id LIMIT %s::int8",
            (limit,),
        )
    else:
        cur = await conn.execute(
            "SELECT id, username, changed_at FROM profile_status_changes_v1"
            # bigint before abs(): abs() of the smallest int4 overflows (one username in 2^32 would wedge its partition).
            " WHERE username IS NOT NULL"
            " AND pg_catalog.mod(pg_catalog.abs(pg_catalog.hashtext(username)::int8), %s::int8) = ANY(%s::int8[])"
            " ORDER BY id LIMIT %s::int8",
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
        await conn.execute("DELETE FROM profile_status_changes_v1 WHERE id = ANY(%s::int8[])", (list(ids),))


async def backlog(conn: AsyncConnection) -> tuple[int, float]:
    """(entries waiting, age in seconds of the oldest) for operators and metrics."""
    cur = await conn.execute(
        "SELECT pg_catalog.count(*),"
        " COALESCE(EXTRACT(EPOCH FROM pg_catalog.clock_timestamp() - pg_catalog.min(changed_at)), 0)"
        " FROM profile_status_changes_v1"
    )
    count, age = await cur.fetchone() or (0, 0)
    return int(count), float(age)


async def seq_floor(conn: AsyncConnection, prefix: str, shards: int) -> dict[int, int]:
    """The highest change number per shard the projector has seen Redis acknowledge (see `sql/003_state_v1.sql`)."""
    names = {_seq_name(prefix, shard): shard for shard in range(shards)}
    cur = await conn.execute(
        "SELECT name, value FROM profile_status_state_v1 WHERE name OPERATOR(pg_catalog.=) ANY(%s::text[])",
        (list(names),),
    )
    return {names[name]: int(value) for name, value in await cur.fetchall()}


async def save_seq_floor(conn: AsyncConnection, prefix: str, floor: dict[int, int]) -> None:
    """Remember the change numbers Redis acknowledged, keeping the highest."""
    if floor:
        await conn.execute(
            "INSERT INTO profile_status_state_v1 (name, value)"
            " SELECT * FROM ROWS FROM (pg_catalog.unnest(%s::text[]), pg_catalog.unnest(%s::int8[]))"
            " ON CONFLICT (name) DO UPDATE SET value = GREATEST(profile_status_state_v1.value, EXCLUDED.value),"
            " updated_at = pg_catalog.now()",
            ([_seq_name(prefix, shard) for shard in floor], list(floor.values())),
        )


def _seq_name(prefix: str, shard: int) -> str:
    return f"redis_seq:{prefix}:{shard}"
