"""Rebuilding every document from Postgres: after a flush, a TRUNCATE, `resync`, and as a periodic refresh.

Safe beside a running projector: every write goes through the version check,
so a rebuild never replaces a document with an older one. And however long it
runs, it never brings back a username deleted or renamed meanwhile: while it
runs, its window is open in every shard, and the projector's write of such a
deletion leaves a tombstone in the meta hash (write_rules.lua) that refuses the
rebuild's older write, whatever the documents' TTLs. The window closes, and the
tombstones go, when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.sharedctypes import Synchronized

from psycopg import AsyncConnection, IsolationLevel, sql
from redis.exceptions import RedisClusterException, RedisError

from projector import metrics
from projector.bad_data import BadData, write_isolating
from shared.errors import one_line
from shared.model.queue_entry import QueueEntry
from shared.model.rows import QueueRow
from shared.model.rules import is_active, queue_member
from shared.postgres.connect import connect_postgres
from shared.postgres.snapshots import (
    ACTIVE,
    LOWER_USERNAME,
    QUEUE_COLUMNS,
    Part,
    Snapshot,
    current_version,
    read_usernames_isolating,
    stream_all,
)
from shared.redis_store import scans
from shared.redis_store.scans import SCAN_COUNT
from shared.redis_store.store import WINDOW_LEASE_S, StatusStore, WriteOutcome
from shared.settings import Settings
from shared.wiring import redis_from_settings

log = logging.getLogger(__name__)
PROGRESS_EVERY_S = 0.2
# A rebuild's chunk write waits out a Redis outage this many times (capped backoff, ~1 minute in all).
REDIS_RETRIES = 15
REDIS_RETRY_MAX_S = 5.0

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
    quarantined: int = 0
    tombstones: int = 0
    complete: bool = True

    def add(self, outcome: WriteOutcome) -> None:
        """Count one write."""
        self.written += outcome.written
        self.unchanged += outcome.unchanged
        self.stale += outcome.stale


async def _not_confirmed(store: StatusStore, version: int) -> AsyncIterator[list[str]]:
    """Usernames Redis holds something of (a document, a meta field) that no write at `version` or
    later confirmed, in chunks; keys no username of this layout could have written are deleted."""
    chunk: list[str] = []
    legacy: list[bytes] = []
    async for key, name in scans.documents(store):
        if name is None:
            legacy.append(key)  # a document of a name an earlier layout wrote as it was
        else:
            chunk.append(name)
        if len(chunk) >= SCAN_COUNT:
            yield await _older(store, chunk, version)
            chunk = []
    if chunk:
        yield await _older(store, chunk, version)
    await scans.delete(store, legacy)
    chunk = []
    for shard in store.keys.all_shards:
        async for name, meta in scans.metas(store, shard):
            if meta.version < version:
                chunk.append(name)
            if len(chunk) >= SCAN_COUNT:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


async def _older(store: StatusStore, usernames: list[str], version: int) -> list[str]:
    """Of `usernames` (with a document), those whose meta field is missing or older than `version`."""
    metas = await store.metas(usernames)
    return [n for n in usernames if (m := metas[n]) is None or m.version < version]


async def _sweep(store: StatusStore, conn: AsyncConnection, version: int, result: RebuildResult) -> None:
    """Re-project usernames Redis knows but the rebuild did not confirm: they vanished from Postgres."""
    bad = BadData(store)
    await bad.load()
    async for stale in _not_confirmed(store, version):
        if not stale:
            continue
        async with conn.transaction():
            snap = await read_usernames_isolating(conn, sorted(set(stale)))
        result.vanished += len(snap.rows)
        await _write(store, snap, result, bad)


async def _queue_matches(store: StatusStore, conn: AsyncConnection) -> bool:
    """Whether the active-queue sets hold as many entries as Postgres has active and pending rows.

    Every expected entry was just written, so equal sizes leave no room for
    entries no row explains, and the costly sweep below can be skipped.
    """
    cur = await conn.execute(
        "SELECT pg_catalog.count(*), pg_catalog.count(*) FILTER (WHERE status OPERATOR(pg_catalog.=) 'PENDING')"
        f" FROM queue WHERE {ACTIVE}"
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
            async for entry in scans.queue_entries(store, key):
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
    ids, explained = set(), set()
    for m in members:
        try:
            ids.add(QueueEntry.parse(m).row_id)
        except ValueError:
            continue  # not an entry of this layout: nothing explains it
    cur = await conn.execute(
        f"SELECT {LOWER_USERNAME}, {QUEUE_COLUMNS} FROM queue WHERE id::text OPERATOR(pg_catalog.=) ANY(%s::text[])",
        (list(ids),),
    )
    for owner, *values in await cur.fetchall():
        row = QueueRow(*values)
        if is_active(row) and store.keys.shard_of(owner) == shard:
            explained.add(queue_member(row, owner).encode())
    return await store.unlist(shard, key, [m for m in members if m not in explained])


@dataclass(frozen=True)
class Workers:
    """Processes that share a rebuild's work, each reading its part of the usernames."""

    settings: Settings
    count: int


async def _write(store: StatusStore, snap: Snapshot, result: RebuildResult, bad: BadData) -> None:
    """Write one chunk: Redis outages are waited out (a rebuild is long; a blip must not cost all of it),
    usernames that fail are quarantined, and degraded values reported."""
    projections = snap.projections(datetime.now(UTC))
    bad.note(snap)
    failures = dict(snap.failures)
    attempt = 0
    while True:
        try:
            outcome = await write_isolating(store, projections, failures)
            break
        except (RedisError, RedisClusterException, OSError) as exc:
            attempt += 1
            if attempt > REDIS_RETRIES:
                raise
            delay = min(REDIS_RETRY_MAX_S, 0.2 * 2**attempt)
            log.warning(
                "rebuild waiting for Redis (attempt %d of %d), retrying in %.1f s: %s", attempt, REDIS_RETRIES, delay,
                one_line(exc), extra={"event": "rebuild_waiting", "dependency": "redis", "attempt": attempt},
            )
            await asyncio.sleep(delay)
    result.add(outcome)
    result.quarantined += len(failures)
    await bad.quarantine(failures)
    await bad.recovered(p.document.username for p, code in zip(projections, outcome.codes, strict=True) if code % 10)


async def _project_all(
    conn: AsyncConnection, store: StatusStore, result: RebuildResult, progress: Progress | None, part: Part | None = None
) -> None:
    """Stream every username (of `part`) from the open transaction's snapshot and write its projection."""
    writing: asyncio.Task[None] | None = None
    bad = BadData(store)
    await bad.load()
    try:
        async for snap in stream_all(conn, part=part):
            result.usernames += len(snap.rows)
            # Redis applies one chunk while the next is read and projected.
            if writing is not None:
                await writing
            writing = asyncio.create_task(_write(store, snap, result, bad))
            if progress:
                progress(len(snap.rows))
        if writing is not None:
            await writing
            writing = None
    finally:
        if writing is not None:
            writing.cancel()
            await asyncio.gather(writing, return_exceptions=True)


async def _keep_window(store: StatusStore, token: str, version: int = 0) -> None:
    """Renew the rebuild's window while it runs (a crashed rebuild's lapses by itself)."""
    while True:
        await asyncio.sleep(WINDOW_LEASE_S / 3)
        with contextlib.suppress(RedisError, RedisClusterException, OSError):  # the next renewal may succeed
            await store.hold_window(token, version)


async def _close_window(store: StatusStore, token: str) -> int:
    """Close the window and drop the tombstones nobody needs; a Redis outage leaves that to the lease."""
    try:
        return await store.close_window(token)
    except (RedisError, RedisClusterException, OSError) as exc:
        log.warning("could not close the rebuild's window: %s", one_line(exc), extra={"event": "window_not_closed"})
        return 0


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
    cur = await conn.execute("SELECT pg_catalog.pg_export_snapshot()")
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
            result.quarantined += done.quarantined


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
    token = uuid.uuid4().hex
    started = time.time()
    if clear:
        await scans.start_rebuild(store, token)
    metrics.REBUILDS.labels(reason).inc()
    log.info("rebuild started", extra={"event": "rebuild_started", "reason": reason})
    result = RebuildResult()
    # Open the window before the snapshot is taken: every deletion committed after the
    # snapshot is then written while the window is open, and kept as a tombstone.
    await store.hold_window(token)
    lease = asyncio.create_task(_keep_window(store, token))
    try:
        # Commit a transaction with an xid first: the snapshot below then has a version
        # strictly above every snapshot taken before, so "older than this rebuild" in
        # the sweep means "not confirmed by it", even when nothing else committed.
        await conn.set_autocommit(True)
        await conn.execute("SELECT pg_catalog.pg_current_xact_id()")
        await conn.set_autocommit(False)
        await conn.set_isolation_level(IsolationLevel.REPEATABLE_READ)
        async with conn.transaction():
            version = await current_version(conn)
            lease.cancel()
            await asyncio.gather(lease, return_exceptions=True)
            await store.hold_window(token, version)
            lease = asyncio.create_task(_keep_window(store, token, version))
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
            result.complete = await scans.finish_rebuild(store, token)
        if result.complete:
            await scans.refreshed(store, started)
    finally:
        lease.cancel()
        await asyncio.gather(lease, return_exceptions=True)
        result.tombstones = await _close_window(store, token)
    log.info(
        "rebuild finished",
        extra={"event": "rebuild_finished", "reason": reason, **result.__dict__},
    )
    return result
