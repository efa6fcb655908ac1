"""The projector's loop: LISTEN, drain the change log in batches, write documents, stay alive.

Postgres I/O goes through `projector.changelog` and `shared.truth`, Redis writes
through `shared.store`; this module only joins them and survives outages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from datetime import UTC, datetime

import orjson
import psycopg
from psycopg import AsyncConnection, IsolationLevel
from redis.exceptions import RedisError

from projector import changelog, metrics
from projector.measurements import Measurements
from projector.ownership import APPLICATION_NAME, Ownership
from projector.rebuild import rebuild
from shared.connections import connect_postgres
from shared.errors import one_line
from shared.keys import BEAT
from shared.settings import Settings
from shared.store import StatusStore
from shared.truth import read_usernames

log = logging.getLogger(__name__)

PROBE_EVERY_S = 10.0
PROBE_TIMEOUT_S = 5.0
STANDBY_RETRY_S = 1.0
OUTAGES = (psycopg.OperationalError, psycopg.InterfaceError, RedisError, OSError)


class ListenerSilent(Exception):
    """The LISTEN connection stopped delivering notifications (our own probe never arrived)."""


def backoff_s(attempt: int, cap_s: float) -> float:
    """Capped exponential backoff with full jitter: spreads reconnecting projectors apart."""
    return random.uniform(0, min(cap_s, 0.2 * 2**attempt))


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


class Projector:
    """Keeps Redis equal to Postgres: follows changes, rebuilds after data loss, reports liveness."""

    def __init__(self, settings: Settings, store: StatusStore) -> None:
        self.settings = settings
        self.store = store
        self._wake = asyncio.Event()
        self._last_notify = time.monotonic()
        self._rebuild: asyncio.Task[None] | None = None
        self._last_refresh = time.monotonic()
        self._backlog = (0, 0.0)
        self.measurements = Measurements(store.keys)
        self.ownership = Ownership(settings.partitions)

    async def run(self, stop: asyncio.Event) -> None:
        """Follow changes until `stop` is set; outages are retried, never fatal."""
        attempt = 0
        while not stop.is_set():
            try:
                await self._session(stop)
                attempt = 0
            except OUTAGES + (ListenerSilent,) as exc:
                attempt += 1
                cause = type(exc).__name__
                metrics.RECONNECTS.labels(cause).inc()
                metrics.ERRORS.labels(cause).inc()
                delay = backoff_s(attempt, self.settings.retry_max_delay_s)
                log.warning(
                    "projector session lost, retrying in %.1f s: %s",
                    delay,
                    one_line(exc),
                    extra={"event": "session_lost", "cause": cause, "attempt": attempt},
                )
                await _sleep_unless(stop, delay)
            finally:
                metrics.ACTIVE.set(0)
        await self._stop_rebuild()

    async def _session(self, stop: asyncio.Event) -> None:
        s = self.settings
        listener = await connect_postgres(
            s.database_url, s.startup_timeout_s, autocommit=True, application_name="profile-status-listener"
        )
        work = await connect_postgres(s.database_url, s.startup_timeout_s, application_name=APPLICATION_NAME)
        notifier: asyncio.Task[None] | None = None
        self.ownership = Ownership(s.partitions)
        try:
            await work.set_autocommit(True)
            await self.ownership.prepare(work)
            if not await self._acquire(work, stop):
                return
            await work.set_isolation_level(IsolationLevel.REPEATABLE_READ)
            metrics.ACTIVE.set(1)
            await changelog.listen(listener)
            self.measurements = await Measurements.load(self.store.redis, self.store.keys)
            notifier = asyncio.create_task(self._notifications(listener))
            log.info(
                "projector active",
                extra={"event": "projector_active", "pid": os.getpid(), "partitions": sorted(self.ownership.owned)},
            )
            await work.set_autocommit(False)
            await self._follow(work, stop, notifier)
        finally:
            if notifier:
                notifier.cancel()
                await asyncio.gather(notifier, return_exceptions=True)
            await listener.close()
            await work.close()

    async def _acquire(self, work: AsyncConnection, stop: asyncio.Event) -> bool:
        """Wait for work: a projector with nothing to hold stands by instead of racing."""
        announced = False
        while not stop.is_set():
            if await self.ownership.acquire(work):
                return True
            if not announced:
                log.info("another projector is active; standing by", extra={"event": "standby"})
                announced = True
            await self._heartbeat(active=False)
            if self.ownership.partitions > 1:  # one partition waits inside acquire()
                await _sleep_unless(stop, STANDBY_RETRY_S)
        return False

    async def _notifications(self, listener: AsyncConnection) -> None:
        async for _ in listener.notifies():
            self._last_notify = time.monotonic()
            self._wake.set()

    async def _follow(self, work: AsyncConnection, stop: asyncio.Event, notifier: asyncio.Task[None]) -> None:
        s = self.settings
        if self.ownership.leads:
            await self._check_generation()
            await self._follow_truncations(work)
        await self._heartbeat(active=True, work=work)
        await self._drain(work, stop)
        last_drain = last_beat = last_probe = time.monotonic()
        probe_sent: float | None = None
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), s.heartbeat_interval_s)
            if notifier.done():
                notifier.result()  # re-raises the listener's failure
                raise ListenerSilent("the notification stream ended")
            woken = self._wake.is_set()
            if woken:
                # Let a burst of notifications land, then take it as one batch.
                await asyncio.sleep(s.coalesce_ms / 1000)
                self._wake.clear()
            now = time.monotonic()
            if woken or now - last_drain >= s.safety_poll_s:
                await self._drain(work, stop)
                last_drain = now
            if now - last_beat >= s.heartbeat_interval_s:
                if self.ownership.partitions > 1:
                    async with work.transaction():
                        await self.ownership.rebalance(work)
                    if not self.ownership.owned:
                        return  # gave everything away: stand by again
                if self.ownership.leads:
                    await self._check_generation()
                    await self._follow_truncations(work)
                await self._heartbeat(active=True, work=work)
                await self.measurements.save(self.store.redis)
                last_beat = now
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
        """Apply the change log in bounded batches until it is empty (or we are asked to stop)."""
        s = self.settings
        while not stop.is_set():
            async with work.transaction():
                batch = await changelog.next_batch(work, s.batch_size, self.ownership.filter(), s.partitions)
                names = {c.username for c in batch if c.username is not None}
                snap = await read_usernames(work, names) if names else None
            if not batch:
                return
            if snap is not None:
                projections = snap.projections(datetime.now(UTC))
                outcome = await self.store.write(projections)
                metrics.record_outcome(outcome.written, outcome.unchanged, outcome.stale)
                completed = self.measurements.observe(snap, projections, outcome.codes, datetime.now(UTC))
                await self.measurements.record_completions(self.store.redis, completed)
            async with work.transaction():
                await changelog.forget(work, [c.id for c in batch])
            applied_at = datetime.now(UTC)
            for c in batch:
                metrics.LAG.observe(max(0.0, (applied_at - c.changed_at).total_seconds()))
            metrics.CHANGES_APPLIED.inc(len(batch))
            metrics.BATCHES.inc()
            if len(batch) < s.batch_size:
                return

    async def _follow_truncations(self, work: AsyncConnection) -> None:
        """A TRUNCATE names nobody: rebuild every username, then forget its entries."""
        if self._rebuild is not None and not self._rebuild.done():
            return
        async with work.transaction():
            ids = await changelog.truncations(work)
        if ids:
            await self._start_rebuild("truncate", clear=False, forget=ids)

    async def _check_generation(self) -> None:
        """An empty or flushed Redis has no generation marker: rebuild without operator action."""
        if not await self.store.redis.exists(self.store.keys.generation):
            await self._start_rebuild("redis_lost_data", clear=True)
        elif time.monotonic() - self._last_refresh >= self.settings.refresh_interval_s:
            # Keeps every document's TTL far from expiry, and repairs anything evicted.
            await self._start_rebuild("refresh", clear=False)

    async def _start_rebuild(self, reason: str, *, clear: bool, forget: list[int] | None = None) -> None:
        if self._rebuild is not None and not self._rebuild.done():
            return
        self._last_refresh = time.monotonic()
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

    async def _heartbeat(self, *, active: bool, work: AsyncConnection | None = None) -> None:
        """Tell readers we are alive, with our backlog, under a key that expires if we stop."""
        if work is not None:
            async with work.transaction():
                self._backlog = await changelog.backlog(work)
            metrics.BACKLOG.set(self._backlog[0])
            metrics.BACKLOG_AGE.set(self._backlog[1])
        beat = {
            "at": time.time(),
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "active": active,
            "backlog": self._backlog[0],
            "backlog_age_s": round(self._backlog[1], 3),
            "rebuilding": self._rebuild is not None and not self._rebuild.done(),
        }
        keys = self.store.keys
        beat["partitions"] = sorted(self.ownership.owned)
        if not active or not self.ownership.leads:
            await self.store.redis.set(f"{keys.heartbeat}:{os.getpid()}", orjson.dumps(beat), ex=self.settings.heartbeat_ttl_s)
            return
        await self.store.run([
            ("SET", keys.heartbeat, orjson.dumps(beat), "EX", self.settings.heartbeat_ttl_s),
            # Tells API processes that the change channel is alive, so their caches may be trusted.
            ("PUBLISH", keys.changes_channel, BEAT),
        ])
