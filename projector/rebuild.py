"""Rebuilding every document from Postgres: after a flush, a TRUNCATE, `resync`, and as a periodic refresh.

Safe beside a running projector: every write goes through the version check,
so a rebuild never replaces a document with an older one.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.sharedctypes import Synchronized

from psycopg import AsyncConnection, IsolationLevel, sql

from projector import metrics
from shared.connections import connect_postgres, redis_from_settings
from shared.rows import QUEUE_COLUMNS, QueueRow
from shared.rules import is_active, queue_member
from shared.settings import Settings
from shared.store import StatusStore, WriteOutcome
from shared.truth import Part, current_version, read_usernames, stream_all

log = logging.getLogger(__name__)
SCAN_COUNT = 1000
PROGRESS_EVERY_S = 0.2

# Marks the projection complete only if no flush wiped the rebuild's own marker meanwhile.
_FINISH = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('SET', KEYS[2], ARGV[1])
    redis.call('DEL', KEYS[1])
    return 1
end
return 0
"""

Progress = Callable[[int], None]


@dataclass
class RebuildResult:
    """What a rebuild did."""

    usernames: int = 0
    written: int = 0
    unchanged: int = 0
    stale: int = 0
    vanished: int = 0
    orphans: int = 0
    complete: bool = True

    def add(self, outcome: WriteOutcome) -> None:
        """Count one write."""
        self.written += outcome.written
        self.unchanged += outcome.unchanged
        self.stale += outcome.stale


async def _not_confirmed(store: StatusStore, version: int) -> AsyncIterator[list[str]]:
    """Usernames whose document or queue entries are missing or older than `version`, in chunks.

    Documents are compared in Redis; a members hash holds each username's
    version in its value, so those are compared here without another read.
    """
    k = store.keys
    chunk: list[str] = []
    async for key in store.redis.scan_iter(match=k.document_pattern, count=SCAN_COUNT):
        chunk.append(k.username_of(key.decode()))
        if len(chunk) >= SCAN_COUNT:
            yield await store.older_than(chunk, version)
            chunk = []
    if chunk:
        yield await store.older_than(chunk, version)
    chunk = []
    for shard in k.all_shards:
        async for name, held in store.redis.hscan_iter(k.active_members(shard), count=SCAN_COUNT):
            if int(held.split(b" ", 1)[0]) < version:
                chunk.append(name.decode())
            if len(chunk) >= SCAN_COUNT:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


async def _sweep(store: StatusStore, conn: AsyncConnection, version: int, result: RebuildResult) -> None:
    """Re-project usernames Redis knows but the rebuild did not confirm: they vanished from Postgres."""
    async for stale in _not_confirmed(store, version):
        if not stale:
            continue
        async with conn.transaction():
            snap = await read_usernames(conn, sorted(set(stale)))
        result.vanished += len(snap.rows)
        result.add(await store.write(snap.projections(datetime.now(UTC))))


async def _queue_matches(store: StatusStore, conn: AsyncConnection) -> bool:
    """Whether the active-queue sets hold as many entries as Postgres has active and pending rows.

    Every expected entry was just written, so equal sizes leave no room for
    entries no row explains, and the costly sweep below can be skipped.
    """
    cur = await conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE status = 'PENDING') FROM queue"
        " WHERE status IN ('PENDING', 'PROCESSING')"
    )
    active, pending = await cur.fetchone() or (0, 0)
    return (int(active), int(pending)) == await store.queue_sizes()


async def _sweep_queue(store: StatusStore, conn: AsyncConnection) -> int:
    """Remove active-queue entries that no active row explains any more (after partial data loss).

    Each chunk is listed before Postgres is asked, so an entry the projector wrote
    meanwhile matches a row it has already read, and stays.
    """
    k = store.keys
    removed = 0
    for shard in k.all_shards:
        for key in k.queue_sets(shard):
            chunk: list[bytes] = []
            async for entry, _ in store.redis.zscan_iter(key, count=SCAN_COUNT):
                chunk.append(entry)
                if len(chunk) >= SCAN_COUNT:
                    removed += await _drop_unexplained(store, conn, shard, key, chunk)
                    chunk = []
            if chunk:
                removed += await _drop_unexplained(store, conn, shard, key, chunk)
    return removed


async def _drop_unexplained(
    store: StatusStore, conn: AsyncConnection, shard: int, key: str, members: list[bytes]
) -> int:
    ids = {m.split(b":")[2].decode() for m in members}
    cur = await conn.execute(
        f"SELECT lower(username), {QUEUE_COLUMNS} FROM queue WHERE id = ANY(%s::uuid[])", (list(ids),)
    )
    rows = [(owner, QueueRow(*values)) for owner, *values in await cur.fetchall()]
    explained = {
        queue_member(row, owner).encode()
        for owner, row in rows
        if is_active(row) and store.keys.shard_of(owner) == shard
    }
    return await store.unlist(key, [m for m in members if m not in explained])


@dataclass(frozen=True)
class Workers:
    """Processes that share a rebuild's work, each reading its part of the usernames."""

    settings: Settings
    count: int


async def _project_all(
    conn: AsyncConnection, store: StatusStore, result: RebuildResult, progress: Progress | None, part: Part | None = None
) -> None:
    """Stream every username (of `part`) from the open transaction's snapshot and write its projection."""
    writing: asyncio.Task[WriteOutcome] | None = None
    try:
        async for snap in stream_all(conn, part=part):
            result.usernames += len(snap.rows)
            projections = snap.projections(datetime.now(UTC))
            # Redis applies one chunk while the next is read and projected.
            if writing is not None:
                result.add(await writing)
            writing = asyncio.create_task(store.write(projections))
            if progress:
                progress(len(snap.rows))
        if writing is not None:
            result.add(await writing)
            writing = None
    finally:
        if writing is not None:
            writing.cancel()
            await asyncio.gather(writing, return_exceptions=True)


_progress_counter: Synchronized[int] | None = None  # set in each worker process


def _init_worker(counter: Synchronized[int]) -> None:
    global _progress_counter
    _progress_counter = counter


def _count_progress(n: int) -> None:
    assert _progress_counter is not None
    with _progress_counter.get_lock():
        _progress_counter.value += n


def collect_rarely() -> None:
    """For a batch process: rows and documents are millions of short-lived objects with
    no cycles to find, so scanning them (a third of the CPU otherwise) is skipped."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def _run_part(settings: Settings, snapshot: str, part: Part) -> RebuildResult:
    """A worker process's share: its part of the usernames, read in the coordinator's snapshot."""
    collect_rarely()
    return asyncio.run(_project_part(settings, snapshot, part))


async def _project_part(settings: Settings, snapshot: str, part: Part) -> RebuildResult:
    result = RebuildResult()
    name = "profile-status-rebuild"
    redis = redis_from_settings(settings, name)
    conn = await connect_postgres(settings.database_url, settings.startup_timeout_s, application_name=name)
    try:
        await conn.set_isolation_level(IsolationLevel.REPEATABLE_READ)
        async with conn.transaction():
            await conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
            store = StatusStore(redis, settings.keys(), settings.ttl_policy())
            await _project_all(conn, store, result, _count_progress, part)
    finally:
        await conn.close()
        await redis.aclose()
    return result


async def _project_in_processes(
    conn: AsyncConnection, workers: Workers, result: RebuildResult, progress: Progress | None
) -> None:
    """Share the projection among worker processes, all reading this transaction's exported snapshot."""
    cur = await conn.execute("SELECT pg_export_snapshot()")
    snapshot = (await cur.fetchone() or ("",))[0]
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited event loop or sockets
    counter: Synchronized[int] = context.Value("q", 0)
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(workers.count, mp_context=context, initializer=_init_worker, initargs=(counter,)) as pool:
        parts = [
            loop.run_in_executor(pool, _run_part, workers.settings, snapshot, Part(i, workers.count))
            for i in range(workers.count)
        ]
        reported = 0
        pending: set[asyncio.Future[RebuildResult]] = set(parts)
        while pending:
            _, pending = await asyncio.wait(pending, timeout=PROGRESS_EVERY_S)
            if progress and counter.value > reported:
                progress(counter.value - reported)
                reported = counter.value
        for part in parts:
            done = part.result()  # a worker's error ends the rebuild here
            result.usernames += done.usernames
            result.written += done.written
            result.unchanged += done.unchanged
            result.stale += done.stale


async def rebuild(
    conn: AsyncConnection,
    store: StatusStore,
    *,
    reason: str,
    clear: bool,
    progress: Progress | None = None,
    workers: Workers | None = None,
) -> RebuildResult:
    """Write every username's document from one Postgres snapshot, then drop what vanished.

    `clear` marks the projection complete (the generation marker) at the end:
    used when Redis lost its data. Nothing is deleted first: the projector keeps
    writing newer documents meanwhile, and every write reconciles its own
    username's queue entries; entries no row explains are removed at the end.
    With `workers`, that many processes share the projection (one Python
    process is bound by its one core). `conn` must be a non-autocommit
    connection this function may use alone.
    """
    k = store.keys
    token = uuid.uuid4().hex
    if clear:
        await store.redis.set(k.rebuild_marker, token)
    metrics.REBUILDS.labels(reason).inc()
    log.info("rebuild started", extra={"event": "rebuild_started", "reason": reason})
    result = RebuildResult()
    # Commit a transaction with an xid first: the snapshot below then has a version
    # strictly above every snapshot taken before, so "older than this rebuild" in
    # the sweep means "not confirmed by it", even when nothing else committed.
    await conn.set_autocommit(True)
    await conn.execute("SELECT pg_current_xact_id()")
    await conn.set_autocommit(False)
    await conn.set_isolation_level(IsolationLevel.REPEATABLE_READ)
    async with conn.transaction():
        version = await current_version(conn)
        if workers is not None and workers.count > 1:
            await _project_in_processes(conn, workers, result, progress)
        else:
            await _project_all(conn, store, result, progress)
    await _sweep(store, conn, version, result)
    await conn.set_autocommit(True)
    try:
        if not await _queue_matches(store, conn):
            result.orphans = await _sweep_queue(store, conn)
    finally:
        await conn.set_autocommit(False)
    if clear:
        result.complete = bool(
            await store.redis.eval(_FINISH, 2, k.rebuild_marker, k.generation, token)
        )
    log.info(
        "rebuild finished",
        extra={"event": "rebuild_finished", "reason": reason, **result.__dict__},
    )
    return result
