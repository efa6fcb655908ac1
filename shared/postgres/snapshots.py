"""Reading what Postgres says now: rows for some usernames, or for all, at one snapshot.

The projector, the API's miss path and `verify` all read through here, and turn
rows into documents with the same pure rules (`shared.model.rules`).

`username` is a varchar, for which pg_catalog has no functions or operators of
its own: an unqualified `lower(username)` or `status = 'PENDING'` would take a
`lower(varchar)` or `=(varchar, varchar)` that a role with CREATE on a schema
of our search path defined, and run it as us. So every function and every
operator on a varchar is named with its schema, and parameters carry their types.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

import psycopg
from psycopg import AsyncConnection

from shared.errors import one_line
from shared.model.instants import (
    Instant,
    OutOfRange,
    degraded,
    in_range,
    parse_postgres,
)
from shared.model.queue_entry import sql_priority_rank
from shared.model.rows import ProfileRow, QueueRow
from shared.model.rules import ACTIVE_STATUSES, Projection, project_with_members, snapshot_version

T = TypeVar("T")


def columns(row_type: type) -> str:
    """The select list for a row dataclass: its fields are the table's column names, in order,
    so a column the status needs is added to the dataclass and nowhere else."""
    return ", ".join(f.name for f in fields(row_type))


QUEUE_COLUMNS = columns(QueueRow)
PROFILE_COLUMNS = columns(ProfileRow)


STREAM_CHUNK_ROWS = 5000

# Lower-cased usernames, active rows (the partial index queue_active_order_v1 matches this predicate),
# and the queue order of `shared.model.queue_entry` (the index's expressions, spelled alike).
LOWER_USERNAME = "pg_catalog.lower(username)"
_ACTIVE_LIST = ", ".join(f"'{status}'" for status in sorted(ACTIVE_STATUSES))
ACTIVE = f"status OPERATOR(pg_catalog.=) ANY (ARRAY[{_ACTIVE_LIST}])"
PRIORITY_RANK = sql_priority_rank()
# What the shipped SQL files (projector/sql) take from here, so that the index they create and
# the queries that need it spell the queue order and the active rows alike, from the one model.
SQL_PLACEHOLDERS = {"@queue_order@": PRIORITY_RANK, "@active@": ACTIVE}
# The queue order as an ORDER BY list: the index's expressions, for any query that walks it.
QUEUE_ORDER = f"{PRIORITY_RANK}, COALESCE(timestamp, '-infinity'::timestamptz), id"
_ORDER = QUEUE_ORDER

_SNAPSHOT_VERSION = (
    "SELECT pg_catalog.pg_snapshot_xmax(s)::text::int8, "
    "(SELECT pg_catalog.count(*) FROM pg_catalog.pg_snapshot_xip(s)) FROM pg_catalog.pg_current_snapshot() AS s"
)
# The queue order, counted in Postgres for one row (by its id).
_POSITION = f"""
SELECT pg_catalog.count(*) FILTER (
           WHERE ({_ORDER}) OPERATOR(pg_catalog.<)
                 (SELECT {_ORDER} FROM queue WHERE id OPERATOR(pg_catalog.=) %(id)s::uuid)),
       pg_catalog.count(*)
FROM queue WHERE {ACTIVE}
"""


@dataclass(slots=True)
class UsernameRows:
    """Every row, in any letter case, of one normalized username."""

    profiles: list[ProfileRow] = field(default_factory=list)
    queue: list[QueueRow] = field(default_factory=list)


@dataclass
class Snapshot:
    """Rows of some usernames as one Postgres snapshot saw them.

    `failures` names the usernames whose rows could not be read or projected,
    with why: the others are projected as if they were not there.
    """

    version: int
    rows: dict[str, UsernameRows]
    failures: dict[str, str] = field(default_factory=dict)

    def projections(self, projected_at: datetime) -> list[Projection]:
        """Documents and active queue members for every username read (a username that fails joins `failures`)."""
        version = self.version
        with collector_paused():
            try:
                return [
                    Projection(*project_with_members(name, r.profiles, r.queue, version=version, projected_at=projected_at))
                    for name, r in self.rows.items()
                ]
            except Exception:  # noqa: BLE001 - one username's rows must not stop the others
                return self._one_by_one(projected_at)

    def _one_by_one(self, projected_at: datetime) -> list[Projection]:
        out = []
        for name, r in list(self.rows.items()):
            try:
                projection = Projection(*project_with_members(name, r.profiles, r.queue, version=self.version, projected_at=projected_at))
                projection.document.to_json()  # what the store will write must serialize too
                out.append(projection)
            except Exception as exc:  # noqa: BLE001
                self.failures[name] = f"cannot project: {one_line(exc)}"
                del self.rows[name]
        return out

    def degraded_values(self) -> Iterator[tuple[str, str, str, str]]:
        """(table, row id, column, value) of every time a document cannot show (`shared.model.instants`)."""
        for rows in self.rows.values():
            for row in rows.queue:
                for column in _QUEUE_TIMES:
                    value = getattr(row, column)
                    if value is not None and _suspect(value) and degraded(value):
                        yield "queue", str(row.id), column, _shown(value)
            for profile in rows.profiles:
                for column in _PROFILE_TIMES:
                    value = getattr(profile, column)
                    if value is not None and _suspect(value) and degraded(value):
                        yield "primary_profiles", str(profile.id), column, _shown(value)


_QUEUE_TIMES = ("timestamp", "last_attempt", "created_at")
_PROFILE_TIMES = ("created_at", "updated_at", "last_scraped_at")


def _suspect(value: Instant) -> bool:
    """A cheap first look (a rebuild asks it of millions of values): only these can be degraded."""
    return isinstance(value, OutOfRange) or value.year <= 2 or value.year >= 9998


def _shown(value: Instant) -> str:
    return value.text if isinstance(value, OutOfRange) else value.isoformat()


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
    await _read_rows(conn, snap, names)
    return snap


async def read_usernames_isolating(conn: AsyncConnection, usernames: Iterable[str]) -> Snapshot:
    """`read_usernames`, but rows a session cannot read (a value of a type it cannot load) cost
    only their own usernames: they go to `failures`, found by halving the set (in savepoints
    of the same transaction, so every read shares its snapshot)."""
    names = sorted(set(usernames))
    snap = Snapshot(await current_version(conn), {})
    await _read_halving(conn, snap, names)
    return snap


UsernamesReader = Callable[[AsyncConnection, Iterable[str]], Awaitable[Snapshot]]


async def read_tolerating_bad_values(read: Callable[[UsernamesReader], Awaitable[T]]) -> T:
    """`read(read_usernames)`; if a value the session cannot load failed it, `read(read_usernames_isolating)`.

    `read` runs its own transaction (the failed one is aborted). Reading without
    savepoints first keeps every batch two statements shorter; only a batch that
    meets such a value pays for isolating its usernames.
    """
    try:
        return await read(read_usernames)
    except psycopg.DataError:
        return await read(read_usernames_isolating)


async def _read_halving(conn: AsyncConnection, snap: Snapshot, names: list[str]) -> None:
    if not names:
        return
    part = Snapshot(snap.version, {n: UsernameRows() for n in names})
    try:
        async with conn.transaction():  # a savepoint: a failed read does not abort the batch
            await _read_rows(conn, part, names)
    except psycopg.DataError as exc:
        if len(names) == 1:
            await _read_one_as_text(conn, snap, names[0], exc)
            return
        half = len(names) // 2
        await _read_halving(conn, snap, names[:half])
        await _read_halving(conn, snap, names[half:])
        return
    snap.rows.update(part.rows)


async def _read_one_as_text(conn: AsyncConnection, snap: Snapshot, name: str, why: Exception) -> None:
    """Read one username's rows as text, keeping what can be understood and nulling the rest
    (a column of another type than the schema's, holding a value psycopg cannot load)."""
    rows = UsernameRows()
    try:
        async with conn.transaction():
            for table, columns, row_type, parts in (
                ("primary_profiles", PROFILE_COLUMNS, ProfileRow, _PROFILE_PARTS),
                ("queue", QUEUE_COLUMNS, QueueRow, _QUEUE_PARTS),
            ):
                as_text = ", ".join(f"{c.strip()}::text" for c in columns.split(","))
                cur = await conn.execute(
                    f"SELECT {as_text} FROM {table} WHERE {LOWER_USERNAME} OPERATOR(pg_catalog.=) %s::text", (name,)
                )
                for values in await cur.fetchall():
                    parsed = [_from_text(kind, v) for kind, v in zip(parts, values, strict=True)]
                    getattr(rows, "profiles" if table == "primary_profiles" else "queue").append(row_type(*parsed))
    except (psycopg.DataError, ValueError) as exc:
        snap.failures[name] = f"cannot read its rows: {one_line(why)}; as text: {one_line(exc)}"
        return
    snap.rows[name] = rows


# How each column of the row types is read back from text: u uuid, s text, t time, i integer,
# told by the type of its dataclass field.
_KINDS = {"UUID": "u", "str": "s", "Instant": "t", "int": "i"}


def _parts(row_type: type) -> str:
    return "".join(_KINDS[str(f.type).split(" |")[0]] for f in fields(row_type))


_QUEUE_PARTS = _parts(QueueRow)
_PROFILE_PARTS = _parts(ProfileRow)


def _from_text(kind: str, text: str | None) -> Any:
    """A value read as text, as its row field holds it; what cannot be understood is None."""
    if text is None or kind == "s":
        return text
    try:
        if kind == "u":
            return UUID(text)
        if kind == "i":
            return int(text)
        instant = parse_postgres(text)
    except ValueError:
        return None
    return in_range(instant)


async def _read_rows(conn: AsyncConnection, snap: Snapshot, names: list[str]) -> None:
    tables = (("primary_profiles", PROFILE_COLUMNS, ProfileRow, "profiles"), ("queue", QUEUE_COLUMNS, QueueRow, "queue"))
    for table, columns, row_type, kept_in in tables:
        cur = await conn.execute(
            f"SELECT {LOWER_USERNAME}, {columns} FROM {table}"
            f" WHERE {LOWER_USERNAME} OPERATOR(pg_catalog.=) ANY(%s::text[])",
            (names,),
        )
        for key, *values in await cur.fetchall():
            getattr(snap.rows[key], kept_in).append(row_type(*values))


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
    Should a row hold a value this session cannot load, the rest is read name by
    name (`read_usernames_isolating`, still in the same snapshot), and only the
    usernames whose rows fail land in a chunk's `failures`.
    """
    version = await current_version(conn)
    profiles = _ordered(conn, "profiles", ProfileRow, PROFILE_COLUMNS, "primary_profiles", chunk, part)
    queue = _ordered(conn, "queue_rows", QueueRow, QUEUE_COLUMNS, "queue", chunk, part)
    pending: dict[str, UsernameRows] = {}
    done: str | None = None  # the last username yielded
    try:
        async for name, rows in _merge(profiles, queue):
            pending[name] = rows
            if len(pending) >= chunk:
                yield Snapshot(version, pending)
                done, pending = name, {}
    except psycopg.DataError:
        await profiles.aclose()
        await queue.aclose()
        async for names in _usernames_after(conn, done, chunk, part):
            yield await read_usernames_isolating(conn, names)
        return
    if pending:
        yield Snapshot(version, pending)


async def _usernames_after(
    conn: AsyncConnection, after: str | None, chunk: int, part: Part | None
) -> AsyncIterator[list[str]]:
    """Usernames (of `part`) sorting after `after`, in chunks, in the order `stream_all` takes them."""
    where, params = _part_filter(part)
    query = (
        f'SELECT k FROM (SELECT {LOWER_USERNAME} COLLATE pg_catalog."C" AS k FROM queue{where}'
        f' UNION SELECT {LOWER_USERNAME} COLLATE pg_catalog."C" FROM primary_profiles{where}) AS names'
        + (" WHERE k OPERATOR(pg_catalog.>) %s::text" if after is not None else "") + " ORDER BY k"
    )
    args = (*params, *params, *((after,) if after is not None else ()))
    names: list[str] = []
    async with conn.cursor(name="profile_status_names") as cur:
        cur.itersize = chunk
        await cur.execute(query, args)
        async for (name,) in cur:
            names.append(name)
            if len(names) >= chunk:
                yield names
                names = []
    if names:
        yield names


def _part_filter(part: Part | None) -> tuple[str, tuple[int, ...]]:
    if part is None:
        return "", ()
    # int8 before abs(): abs() of the smallest int4 overflows.
    return (
        f" WHERE pg_catalog.mod(pg_catalog.abs(pg_catalog.hashtext({LOWER_USERNAME})::int8), %s::int8)"
        " OPERATOR(pg_catalog.=) %s::int8",
        (part.count, part.index),
    )


async def _ordered(
    conn: AsyncConnection, name: str, row_type: type, columns: str, table: str, chunk: int, part: Part | None
) -> AsyncIterator[tuple[str, Any]]:
    where, params = _part_filter(part)
    # COLLATE "C" sorts by bytes, the order Python compares the keys in.
    async with conn.cursor(name=f"profile_status_{name}") as cur:
        cur.itersize = chunk
        await cur.execute(
            f'SELECT {LOWER_USERNAME} COLLATE pg_catalog."C" AS k, {columns} FROM {table}{where} ORDER BY k', params
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


async def count_position(conn: AsyncConnection, row_id: str) -> tuple[int, int]:
    """(rows ahead, active rows) for one active row, counted in Postgres.

    The slow path, for when Redis cannot answer a position yet (the projection is
    being rebuilt); one indexed count, ordered as the queue entries are.
    """
    cur = await conn.execute(_POSITION, {"id": row_id})
    ahead, total = await cur.fetchone() or (0, 0)
    return int(ahead), int(total)


async def count_usernames(conn: AsyncConnection) -> int:
    """How many distinct usernames the two tables hold (for progress bars)."""
    cur = await conn.execute(
        f"SELECT pg_catalog.count(*) FROM (SELECT {LOWER_USERNAME} FROM queue"
        f" UNION SELECT {LOWER_USERNAME} FROM primary_profiles) AS names"
    )
    row = await cur.fetchone()
    await conn.rollback()
    return int(row[0]) if row else 0
