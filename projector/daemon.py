"""The projector's loop: LISTEN, drain the change log in batches, write documents, stay alive.

Postgres I/O goes through `projector.changelog` and `shared.postgres.snapshots`, Redis writes
through `shared.redis_store.store`; this module only joins them and survives:

- outages of any length, of either server (a session that fails is retried with
  capped, jittered backoff, saying what it waits for); SIGTERM ends it within
  seconds even mid-retry or mid-query;
- bad data (`projector.bad_data`): one username's rows never hold up another's;
- a Redis that lost data: flushed (no generation marker: rebuild), or rolled
  back (a change counter below what it acknowledged before: rebuild).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg
from psycopg import AsyncConnection, IsolationLevel
from redis.exceptions import RedisClusterException, RedisError

from projector import changelog, metrics
from projector.bad_data import BadData, write_isolating
from projector.measurements import Measurements
from projector.ownership import APPLICATION_NAME, Ownership
from projector.rebuild import rebuild
from shared.errors import (
    PostgresUnavailable,
    RedisUnavailable,
    one_line,
    raise_if_cancelled,
)
from shared.postgres.connect import connect_postgres
from shared.postgres.snapshots import Snapshot, UsernamesReader, read_tolerating_bad_values
from shared.redis_store import reports, scans
from shared.redis_store.records import Heartbeat
from shared.redis_store.store import StatusStore
from shared.settings import Settings

log = logging.getLogger(__name__)

PROBE_EVERY_S = 10.0
PROBE_TIMEOUT_S = 5.0
STANDBY_RETRY_S = 1.0
# On SIGTERM a batch in flight gets this long to finish before it is cancelled (the contract allows 5 s in all).
STOP_GRACE_S = 3.0
CANCEL_AGAIN_S = 0.5


class ListenerSilent(Exception):
    """The LISTEN connection stopped delivering notifications (our own probe never arrived)."""


def backoff_s(attempt: int, cap_s: float) -> float:
    """Capped exponential backoff with full jitter: spreads reconnecting projectors apart."""
    return random.uniform(0, min(cap_s, 0.2 * 2**attempt))


def dependency_of(exc: BaseException) -> str:
    """What an error says the projector is waiting for.

    Only a lost or refused connection is an outage to wait out; any other
    error from Postgres (a permission taken away, a table altered under us) is
    "unexpected": logged with its traceback, since no waiting mends it.
    """
    if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError, PostgresUnavailable, ListenerSilent)):
        return "postgres"
    if isinstance(exc, (RedisError, RedisClusterException, RedisUnavailable)):
        return "redis"
    if isinstance(exc, OSError):
        return "network"
    return "unexpected"


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def _run_until_stopped(task: asyncio.Task[None], stop: asyncio.Event, grace_s: Callable[[], float]) -> None:
    """Await `task`; once `stop` is set, give it `grace_s()` to finish what it does, then cancel it.

    A session blocked on a server that does not answer (a cut network) would
    otherwise keep SIGTERM waiting until the network times it out.
    """
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if not task.done():
        await asyncio.wait({task}, timeout=grace_s())
    if not task.done():
        # psycopg answers a cancellation by asking the server to cancel the query, and waits
        # for it (seconds, on a server that does not answer); a second one closes the connection.
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=CANCEL_AGAIN_S)
        with contextlib.suppress(asyncio.CancelledError):
            task.result()
        return
    task.result()


class Projector:
    """Keeps Redis equal to Postgres: follows changes, rebuilds after data loss, reports liveness."""

    def __init__(self, settings: Settings, store: StatusStore) -> None:
        self.settings = settings
        self.store = store
        self._wake = asyncio.Event()
        self._last_notify = time.monotonic()
        self._last_check = float("-inf")
        self._last_batch = float("-inf")
        self._rebuild: asyncio.Task[None] | None = None
        self._backlog = (0, 0.0)
        self._waiting_since: float | None = None
        self._in_batch = False
        # The highest change number per shard Redis acknowledged to us: a lower counter means lost writes.
        self._seq_floor: dict[int, int] = {}
        self.measurements = Measurements()
        self.ownership = Ownership(settings.partitions)
        self.bad = BadData(store)

    async def run(self, stop: asyncio.Event) -> None:
        """Follow changes until `stop` is set; outages of any length are retried, never fatal."""
        attempt = 0
        while not stop.is_set():
            session = asyncio.create_task(self._session(stop), name="projector-session")
            try:
                # A batch in flight may finish; a session still connecting or waiting has nothing to finish.
                await _run_until_stopped(session, stop, lambda: STOP_GRACE_S if self._in_batch else 0.0)
                attempt = 0
            except Exception as exc:  # noqa: BLE001 - whatever ends a session, the next one retries
                attempt += 1
                await _sleep_unless(stop, self._waiting(exc, attempt))
            finally:
                metrics.ACTIVE.set(0)
        await self._stop_rebuild()

    def _waiting(self, exc: BaseException, attempt: int) -> float:
        """Say what the projector waits for (log, metrics); returns how long to wait before retrying."""
        dependency = dependency_of(exc)
        now = time.monotonic()
        if self._waiting_since is None:
            self._waiting_since = now
        delay = backoff_s(attempt, self.settings.retry_max_delay_s)
        waited = now - self._waiting_since
        metrics.RECONNECTS.labels(type(exc).__name__).inc()
        metrics.ERRORS.labels(type(exc).__name__).inc()
        for name in ("postgres", "redis", "network", "unexpected"):
            metrics.WAITING.labels(name).set(1 if name == dependency else 0)
        metrics.OUTAGE_SECONDS.set(round(waited, 3))
        extra = {"event": "waiting", "dependency": dependency, "cause": type(exc).__name__, "attempt": attempt,
                 "waited_s": round(waited, 1), "retry_in_s": round(delay, 2)}
        if dependency == "unexpected":
            log.error("projector session failed unexpectedly, retrying in %.1f s", delay, exc_info=exc, extra=extra)
        else:
            log.warning(
                "waiting for %s for %.1f s (attempt %d), retrying in %.1f s: %s",
                dependency, waited, attempt, delay, one_line(exc), extra=extra,
            )
        return delay

    def _outage_over(self) -> None:
        if self._waiting_since is not None:
            log.info(
                "dependencies are back after %.1f s", time.monotonic() - self._waiting_since,
                extra={"event": "outage_over", "waited_s": round(time.monotonic() - self._waiting_since, 1)},
            )
        self._waiting_since = None
        metrics.OUTAGE_SECONDS.set(0)
        for name in ("postgres", "redis", "network", "unexpected"):
            metrics.WAITING.labels(name).set(0)

    async def _session(self, stop: asyncio.Event) -> None:
        s = self.settings
        listener = await connect_postgres(
            s.database_url, s.startup_timeout_s, autocommit=True, application_name="profile-status-listener"
        )
        work: AsyncConnection | None = None
        notifier: asyncio.Task[None] | None = None
        try:
            work = await connect_postgres(s.database_url, s.startup_timeout_s, application_name=APPLICATION_NAME)
            self.ownership = Ownership(s.partitions)
            await work.set_autocommit(True)
            await self.ownership.prepare(work)
            if not await self._acquire(work, stop):
                return
            await work.set_isolation_level(IsolationLevel.REPEATABLE_READ)
            metrics.ACTIVE.set(1)
            await changelog.listen(listener)
            self.measurements = await Measurements.load(self.store)
            await self.bad.load()
            notifier = asyncio.create_task(self._notifications(listener))
            log.info(
                "projector active",
                extra={"event": "projector_active", "pid": os.getpid(), "partitions": sorted(self.ownership.owned)},
            )
            await work.set_autocommit(False)
            await self._follow(work, stop, notifier)
        finally:
            # Closed before anything is awaited: a stop that cancels again while this session
            # cleans up can interrupt a wait, but not a close (it never suspends).
            if notifier:
                notifier.cancel()
            await listener.close()
            if work is not None:
                await work.close()
            if notifier:
                await asyncio.gather(notifier, return_exceptions=True)

    async def _acquire(self, work: AsyncConnection, stop: asyncio.Event) -> bool:
        """Wait for work: a projector with nothing to hold stands by instead of racing."""
        announced = False
        while not stop.is_set():
            if await self.ownership.acquire(work):
                return True
            if not announced:
                log.info("another projector is active; standing by", extra={"event": "standby"})
                announced = True
                self._outage_over()
            await self._heartbeat(active=False)
            if self.ownership.partitions > 1:  # one partition waits inside acquire()
                await _sleep_unless(stop, STANDBY_RETRY_S)
        return False

    async def _notifications(self, listener: AsyncConnection) -> None:
        async for _ in listener.notifies():
            self._last_notify = time.monotonic()
            self._wake.set()

    async def _follow(self, work: AsyncConnection, stop: asyncio.Event, notifier: asyncio.Task[None]) -> None:
        # Beats come from their own task: a batch that takes long (a huge backlog, a busy
        # database) is work, and must not look like a dead projector.
        beats = asyncio.create_task(self._beat_while_active(), name="projector-heartbeat")
        try:
            await self._follow_changes(work, stop, notifier)
        finally:
            beats.cancel()
            await asyncio.gather(beats, return_exceptions=True)

    async def _follow_changes(self, work: AsyncConnection, stop: asyncio.Event, notifier: asyncio.Task[None]) -> None:
        s = self.settings
        if self.ownership.leads:
            async with work.transaction():
                stored = await changelog.seq_floor(work, self.store.keys.prefix, self.store.keys.shards)
            self._seq_floor = {shard: max(v, self._seq_floor.get(shard, 0)) for shard, v in stored.items()} | {
                shard: v for shard, v in self._seq_floor.items() if shard not in stored
            }
            await self._check_store(work)
            await self._follow_truncations(work)
        await self._measure_backlog(work)
        self._outage_over()
        await self._drain(work, stop)
        last_drain = last_probe = time.monotonic()
        probe_sent: float | None = None
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), s.heartbeat_interval_s)
            if notifier.done():
                notifier.result()  # re-raises the listener's failure
                raise ListenerSilent("the notification stream ended")
            woken = self._wake.is_set()
            if woken:
                # Let a burst of notifications land, then take it as one batch; a steady trickle
                # waits for the batch interval, so the fixed cost of a batch is shared.
                paced = self._last_batch + s.batch_interval_ms / 1000 - time.monotonic()
                await asyncio.sleep(max(s.coalesce_ms / 1000, paced))
                self._wake.clear()
            now = time.monotonic()
            if woken or now - last_drain >= s.safety_poll_s:
                self._last_batch = now
                await self._drain(work, stop)
                last_drain = now
            if now - self._last_check >= s.heartbeat_interval_s:
                self._last_check = now
                if self.ownership.partitions > 1:
                    async with work.transaction():
                        await self.ownership.rebalance(work)
                    if not self.ownership.owned:
                        return  # gave everything away: stand by again
                if self.ownership.leads:
                    await self._check_store(work)
                    await self._follow_truncations(work)
                await self._measure_backlog(work)
                await self.measurements.save(self.store)
            if probe_sent is not None and self._last_notify >= probe_sent:
                probe_sent = None
            elif probe_sent is not None and now - probe_sent > PROBE_TIMEOUT_S:
                raise ListenerSilent(f"no notification for {PROBE_TIMEOUT_S:g} s after a probe")
            if probe_sent is None and now - last_probe >= PROBE_EVERY_S:
                probe_sent = last_probe = time.monotonic()
                await changelog.notify_probe(work)
                await work.commit()
            self._raise_if_rebuild_failed()

    async def _drain(self, work: AsyncConnection, stop: asyncio.Event) -> None:
        """Apply the change log in bounded batches until it is empty (or we are asked to stop),
        measuring the backlog for the heartbeat every beat meanwhile."""
        s = self.settings
        while not stop.is_set():
            batch, snap = await self._read_batch(work)
            if not batch:
                return
            self._in_batch = True
            try:
                if snap is not None:
                    await self._apply(snap)
                async with work.transaction():
                    await changelog.forget(work, [c.id for c in batch])
                    # With the entries it consumed: a Redis restored to any moment before this
                    # batch then shows counters below the floor, however soon the process stops.
                    await changelog.save_seq_floor(work, self.store.keys.prefix, self._seq_floor)
            finally:
                self._in_batch = False
            applied_at = datetime.now(UTC)
            for c in batch:
                metrics.LAG.observe(max(0.0, (applied_at - c.changed_at).total_seconds()))
            metrics.CHANGES_APPLIED.inc(len(batch))
            metrics.BATCHES.inc()
            if len(batch) < s.batch_size:
                return
            if time.monotonic() - self._last_check >= s.heartbeat_interval_s:
                self._last_check = time.monotonic()
                await self._measure_backlog(work)

    async def _read_batch(self, work: AsyncConnection) -> tuple[list[changelog.Change], Snapshot | None]:
        """The next entries of the change log, and their usernames' rows in the same snapshot."""
        s = self.settings

        async def read(rows: UsernamesReader) -> tuple[list[changelog.Change], Snapshot | None]:
            async with work.transaction():
                batch = await changelog.next_batch(work, s.batch_size, self.ownership.filter(), s.partitions)
                names = {c.username for c in batch if c.username is not None}
                return batch, await rows(work, names) if names else None

        return await read_tolerating_bad_values(read)

    async def _apply(self, snap: Snapshot) -> None:
        """Write one batch's documents; a username whose rows fail goes to quarantine, the rest go on."""
        projections = snap.projections(datetime.now(UTC))
        self.bad.note(snap)
        failures = dict(snap.failures)
        outcome = await write_isolating(self.store, projections, failures)
        await self.bad.quarantine(failures)
        written = [p.document.username for p, code in zip(projections, outcome.codes, strict=True) if code % 10]
        await self.bad.recovered(written)
        metrics.record_outcome(outcome.written, outcome.unchanged, outcome.stale)
        self._note_seqs(outcome.seqs)
        completed = self.measurements.observe(snap, projections, outcome.codes, datetime.now(UTC))
        await self.measurements.record_completions(self.store, completed)

    def _note_seqs(self, seqs: dict[int, int]) -> None:
        for shard, seq in seqs.items():
            if seq > self._seq_floor.get(shard, 0):
                self._seq_floor[shard] = seq

    async def _follow_truncations(self, work: AsyncConnection) -> None:
        """A TRUNCATE names nobody: rebuild every username, then forget its entries."""
        if self._rebuilding:
            return
        async with work.transaction():
            ids = await changelog.truncations(work)
        if ids:
            await self._start_rebuild("truncate", clear=False, forget=ids)

    async def _check_store(self, work: AsyncConnection) -> None:
        """Has Redis lost data? Flushed or emptied: rebuild it; rolled back: repair it; due: refresh it."""
        generation, refreshed = await scans.state(self.store)
        if not generation:
            if not self._rebuilding:
                removed = await self.store.upgrade_layout()
                if removed:
                    log.info("removed %d keys of an earlier layout", removed, extra={"event": "layout_upgraded"})
            await self._start_rebuild("redis_lost_data", clear=True)
        counters = await self.store.seqs()
        lost = {shard: floor for shard, floor in self._seq_floor.items() if shard < len(counters) and counters[shard] < floor}
        self._note_seqs(dict(enumerate(counters)))
        if lost:
            metrics.ROLLBACKS.inc()
            log.error(
                "Redis has lost writes it acknowledged (change counters %s, expected at least %s): repairing",
                {s: counters[s] for s in lost}, lost, extra={"event": "redis_rolled_back"},
            )
            # Readers then see numbers they never heard, and forget what they remember.
            await self.store.raise_seqs(lost)
            await self._start_rebuild("redis_rolled_back", clear=False)
        elif generation and (refreshed is None or time.time() - refreshed >= self.settings.refresh_interval_s):
            # Keeps every document's TTL far from expiry, and repairs anything evicted. Timed by the
            # store, not this process: a projector restarted every day still refreshes every day.
            await self._start_rebuild("refresh", clear=False)
        async with work.transaction():
            await changelog.save_seq_floor(work, self.store.keys.prefix, self._seq_floor)

    @property
    def _rebuilding(self) -> bool:
        return self._rebuild is not None and not self._rebuild.done()

    async def _start_rebuild(self, reason: str, *, clear: bool, forget: list[int] | None = None) -> None:
        if self._rebuilding:
            return
        self._rebuild = asyncio.create_task(self._run_rebuild(reason, clear, forget or []))

    async def _run_rebuild(self, reason: str, clear: bool, forget: list[int]) -> None:
        # Its own connection: the change log keeps being applied meanwhile.
        conn = await connect_postgres(
            self.settings.database_url, self.settings.startup_timeout_s, application_name="profile-status-rebuild"
        )
        try:
            result = await rebuild(conn, self.store, reason=reason, clear=clear)
            if forget:
                async with conn.transaction():
                    await changelog.forget(conn, forget)
            if not result.complete:
                log.warning("Redis lost data during the rebuild; rebuilding again", extra={"event": "rebuild_restart"})
        finally:
            await conn.close()

    def _raise_if_rebuild_failed(self) -> None:
        task = self._rebuild
        if task is not None and task.done() and not task.cancelled():
            self._rebuild = None
            if (exc := task.exception()) is not None:
                raise exc

    async def _stop_rebuild(self) -> None:
        if self._rebuild is not None:
            self._rebuild.cancel()
            await asyncio.gather(self._rebuild, return_exceptions=True)
            self._rebuild = None

    async def _measure_backlog(self, work: AsyncConnection) -> None:
        """The change log's size and age, for the heartbeat and the metrics."""
        async with work.transaction():
            self._backlog = await changelog.backlog(work)
        metrics.BACKLOG.set(self._backlog[0])
        metrics.BACKLOG_AGE.set(self._backlog[1])

    async def _beat_while_active(self) -> None:
        """Beat every interval while following changes; a failed beat is retried at the next one
        (the session itself notices a Redis that stays away)."""
        while True:
            try:
                await self._heartbeat(active=True)
            except (RedisError, RedisClusterException, OSError) as exc:
                log.debug("heartbeat not written: %s", one_line(exc))
            raise_if_cancelled()
            await asyncio.sleep(self.settings.heartbeat_interval_s)

    async def _heartbeat(self, *, active: bool) -> None:
        """Tell readers we are alive, with our backlog, under a key that expires if we stop."""
        beat = Heartbeat(
            at=time.time(),
            active=active,
            backlog=self._backlog[0],
            backlog_age_s=round(self._backlog[1], 3),
            rebuilding=self._rebuilding,
            partitions=sorted(self.ownership.owned),
            pid=os.getpid(),
            host=socket.gethostname(),
        )
        await reports.beat(self.store, beat, leader=active and self.ownership.leads, ttl_s=self.settings.heartbeat_ttl_s)
