"""A simulated workload: a stream of profile requests and workers that process them.

Used by ``profile-status demo`` (in-process) and ``profile-status simulate``
(against ``$DATABASE_URL``). It only writes the seed's ``queue`` and
``primary_profiles`` tables, exactly as real workers would, so everything the
page shows comes through the real change capture, projector and API.

Time compression. A real job spends ~4-5 minutes in PROCESSING and the status
rules derive the stage from ``now() - last_attempt`` (at the boundaries of
``shared.model.render.STAGE_BOUNDARIES_S``: initializing, fetching, analyzing,
insights, then finalizing). With
``speed`` > 1 a worker sleeps only ``simulated / speed`` seconds, so the rows
would never reach the later stages on the API's real clock. We therefore
*backdate* ``last_attempt``: at every stage boundary the worker writes
``last_attempt = now() - simulated_elapsed``, so the API's duration, stage,
progress and ETA match the simulated clock at each boundary (between two
boundaries the API's duration advances in real time, by at most
``60 / speed`` seconds). A failed attempt's ``last_attempt`` is backdated the
same way so that the seed's backoff, ``last_attempt + retry_backoff_minutes(attempts)``
(what the API shows as ``next_retry_time``), falls when the compressed backoff
ends, and the retrier simply applies that rule. Stage boundaries, attempt limit,
backoff, priorities and the queue order are imported from the model, not restated.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from shared.errors import PostgresUnavailable, one_line
from shared.model.queue_entry import RANK_NAMES
from shared.model.render import MAX_ATTEMPTS, STAGE_BOUNDARIES_S, is_retry_eligible, retry_backoff_minutes
from shared.postgres.snapshots import ACTIVE, QUEUE_ORDER

log = logging.getLogger(__name__)

JOB_SIMULATED_S = (250.0, 290.0)  # long enough to show "finalizing"
IDLE_POLL_S = 1.0  # picks up rows other writers insert; our own requests wake workers at once
JANITOR_EVERY_S = 0.5
COUNT_EVERY_S = 1.0
SOURCE = "simulator"
# Share of requests per rank (HIGH, MEDIUM, any other priority, named as the overview names them).
PRIORITY_MIX = dict(zip(RANK_NAMES, (0.2, 0.5, 0.3), strict=True))
_ERRORS = (
    "Instagram API rate limit exceeded (HTTP 429)",
    "Timed out fetching recent posts after 30 s",
    "Profile became private during scraping",
    "Proxy connection reset by peer",
    "Media CDN answered 503 Service Unavailable",
)
_WORDS = ("creator", "travel", "foodie", "studio", "daily", "urban", "fit", "glow", "pixel", "wander",
          "chef", "beauty", "tech", "vibes", "nomad", "indie", "retro", "lens", "sketch", "mindful")
# The queue order, spelled as the queue_active_order_v1 index is, so the claim walks that index.
_ORDER = QUEUE_ORDER
_CLAIM = f"""
    WITH next AS (
        SELECT id FROM queue WHERE status = 'PENDING' ORDER BY {_ORDER} LIMIT 1 FOR UPDATE SKIP LOCKED
    )
    UPDATE queue q SET status = 'PROCESSING', last_attempt = now(), attempts = COALESCE(q.attempts, 0) + 1,
                       error_message = NULL, updated_at = now()
    FROM next WHERE q.id = next.id
    RETURNING q.id, q.username, COALESCE(q.attempts, 0)
"""
# Only the attempt we claimed may be moved on: a janitor elsewhere may have re-queued it.
_MINE = "id = %(id)s AND status = 'PROCESSING' AND attempts = %(attempts)s"
# Failed rows that may be retried; which are due is the model's rule (`_retry_due`).
_FAILED = """
    SELECT id, COALESCE(attempts, 0), last_attempt, now() FROM queue
    WHERE status = 'FAILED' AND last_attempt IS NOT NULL AND COALESCE(attempts, 0) < %s
"""


@dataclass(frozen=True, slots=True)
class WorkloadConfig:
    """What to simulate. Rates are per real second; durations are simulated seconds divided by ``speed``."""

    rate: float = 0.5
    workers: int = 8
    speed: float = 20.0
    failure_ratio: float = 0.15
    initial: int = 24
    max_active: int = 2000  # stop requesting while this many rows are active, so a long demo stays bounded
    priority_mix: dict[str, float] = field(default_factory=lambda: dict(PRIORITY_MIX))

    def __post_init__(self) -> None:
        if self.rate < 0 or self.workers < 0 or self.initial < 0:
            raise ValueError("rate, workers and initial must not be negative")
        if self.speed <= 0:
            raise ValueError("speed must be above 0")
        if not 0 <= self.failure_ratio <= 1:
            raise ValueError("failure ratio must be between 0 and 1")


@dataclass(slots=True)
class WorkloadStats:
    """Counters since start, and the last counted queue, for the live summary."""

    seeded: int = 0  # the initial burst, kept out of the request rate
    requested: int = 0
    claimed: int = 0
    completed: int = 0
    failed: int = 0
    retried: int = 0
    pending: int = 0
    processing: int = 0


@dataclass(frozen=True, slots=True)
class _Job:
    id: uuid.UUID
    username: str
    attempts: int


def random_username(rng: random.Random) -> str:
    """A realistic-ish Instagram handle, e.g. ``travel_48213``."""
    return f"{rng.choice(_WORDS)}_{rng.randint(1000, 99999)}"


class Simulator:
    """Request stream, workers, retrier and counter, sharing one connection pool."""

    def __init__(self, database_url: str, config: WorkloadConfig, *, seed: int | None = None) -> None:
        self.config = config
        self.stats = WorkloadStats()
        self._rng = random.Random(seed)
        self._pool = AsyncConnectionPool(
            database_url,
            min_size=1,
            max_size=config.workers + 3,
            open=False,
            kwargs={"autocommit": True, "application_name": "profile-status-simulator"},
        )
        self._wake = asyncio.Event()
        self._in_flight: dict[uuid.UUID, int] = {}
        self._last_error_log = 0.0

    async def run(self, stop: asyncio.Event, *, startup_timeout_s: float = 10.0, reclaim: bool = False) -> None:
        """Simulate until ``stop`` is set; in-flight jobs go back to PENDING on the way out.

        ``reclaim`` puts every PROCESSING row back to PENDING first: right when
        this simulator is the only worker (the demo's own database after a hard kill).
        """
        try:
            await self._pool.open(wait=True, timeout=startup_timeout_s)
        except PoolTimeout as exc:
            await self._pool.close()
            raise PostgresUnavailable(f"simulator cannot reach PostgreSQL within {startup_timeout_s:g} s") from exc
        try:
            if reclaim:
                await self._execute(
                    "UPDATE queue SET status = 'PENDING', updated_at = now() WHERE status = 'PROCESSING'"
                )
            await self._request_initial()
            loops: list[Callable[[asyncio.Event], Coroutine[Any, Any, None]]] = [
                self._requests, self._janitor, self._counter
            ]
            loops += [self._worker] * self.config.workers
            tasks = [asyncio.create_task(loop(stop)) for loop in loops]
            try:
                await stop.wait()
            finally:
                self._wake.set()
                # Every loop returns within one short statement once `stop` is set.
                await asyncio.wait(tasks, timeout=2.0)
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await self._release_in_flight()
        finally:
            await self._pool.close(timeout=1.0)

    # -- the request stream -------------------------------------------------

    async def _request_initial(self) -> None:
        for _ in range(self.config.initial):
            if await self._guarded(self._request_one):
                self.stats.seeded += 1

    async def _requests(self, stop: asyncio.Event) -> None:
        if self.config.rate <= 0:
            return
        next_at = time.monotonic()
        while not stop.is_set():
            # Poisson arrivals look like real traffic: bursts and lulls.
            next_at += self._rng.expovariate(self.config.rate)
            if await _sleep(stop, next_at - time.monotonic()):
                return
            if self.stats.pending + self.stats.processing < self.config.max_active:
                if await self._guarded(self._request_one):
                    self.stats.requested += 1

    async def _request_one(self) -> bool:
        mix = self.config.priority_mix
        priority = self._rng.choices(list(mix), weights=list(mix.values()))[0]
        await self._execute(
            "INSERT INTO queue (username, source, priority, request_id) VALUES (%s, %s, %s, %s)",
            (random_username(self._rng), SOURCE, priority, f"sim-{uuid.uuid4().hex[:20]}"),
        )
        self.stats.pending += 1  # until the next count, so the cap holds between counts
        self._wake.set()
        return True

    # -- the workers --------------------------------------------------------

    async def _worker(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            job = await self._guarded(self._claim)
            if job is None:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), IDLE_POLL_S)
                except TimeoutError:
                    pass
                continue
            self._in_flight[job.id] = job.attempts
            if await self._work(job, stop):
                self._in_flight.pop(job.id, None)
            # else: stopped mid-job; run() gives the row back

    async def _claim(self) -> _Job | None:
        async with self._pool.connection() as conn:
            row = await (await conn.execute(_CLAIM)).fetchone()
        if row is None:
            return None
        self.stats.claimed += 1
        return _Job(id=row[0], username=row[1], attempts=row[2])

    async def _work(self, job: _Job, stop: asyncio.Event) -> bool:
        """Take the job through its stages to its outcome; False when stopped half-way."""
        speed = self.config.speed
        total = self._rng.uniform(*JOB_SIMULATED_S)
        fails = self._rng.random() < self.config.failure_ratio
        end = self._rng.uniform(5.0, total) if fails else total
        started = time.monotonic()
        for boundary in [b for b in STAGE_BOUNDARIES_S if b < end] + [end]:
            if await _sleep(stop, started + boundary / speed - time.monotonic()):
                return False
            if boundary == end:
                break
            # Backdate so the API's stage is the simulated one (see the module docstring).
            moved = await self._guarded(self._update, "last_attempt = now() - %(elapsed)s * interval '1 second'",
                                        job, {"elapsed": boundary})
            if not moved:
                return True  # someone else took the row over (or the database is away): drop the job
        await self._guarded(self._fail if fails else self._complete, job, end)
        return True

    async def _update(self, assignments: str, job: _Job, params: dict[str, Any]) -> bool:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"UPDATE queue SET {assignments}, updated_at = now() WHERE {_MINE}",
                {"id": job.id, "attempts": job.attempts, **params},
            )
            return bool(cur.rowcount)

    async def _fail(self, job: _Job, elapsed_s: float) -> None:
        if is_retry_eligible("FAILED", job.attempts):
            # last_attempt + backoff (the model's rule) must land at now + backoff / speed.
            backoff_s = retry_backoff_minutes(job.attempts) * 60.0
            backdate_s = backoff_s - backoff_s / self.config.speed
        else:
            backdate_s = elapsed_s
        moved = await self._update(
            "status = 'FAILED', error_message = %(error)s, last_attempt = now() - %(back)s * interval '1 second'",
            job, {"error": self._rng.choice(_ERRORS), "back": backdate_s},
        )
        if moved:
            self.stats.failed += 1
            log.debug("job failed", extra={"event": "sim_job_failed", "username": job.username,
                                           "attempts": job.attempts})

    async def _complete(self, job: _Job, elapsed_s: float) -> None:
        rng = self._rng
        followers = int(rng.lognormvariate(9, 1.6))
        posts = rng.randint(12, 2400)
        name = job.username.split("_")[0].title() + " " + rng.choice(("Studio", "Daily", "Life", "Co", "Journal"))
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                f"UPDATE queue SET status = 'COMPLETED', updated_at = now(), "
                f"last_attempt = now() - %(elapsed)s * interval '1 second' WHERE {_MINE}",
                {"id": job.id, "attempts": job.attempts, "elapsed": elapsed_s},
            )
            if not cur.rowcount:
                return
            await conn.execute(
                """
                INSERT INTO primary_profiles (username, full_name, followers_count, following_count, posts_count, bio,
                    is_verified, profile_data, content_stats, engagement_metrics, last_scraped_at, scraping_status)
                VALUES (%(u)s, %(name)s, %(followers)s, %(following)s, %(posts)s, %(bio)s, %(verified)s,
                    %(data)s, %(content)s, %(engagement)s, now(), 'completed')
                ON CONFLICT (username) DO UPDATE SET
                    full_name = EXCLUDED.full_name, followers_count = EXCLUDED.followers_count,
                    following_count = EXCLUDED.following_count, posts_count = EXCLUDED.posts_count,
                    bio = EXCLUDED.bio, is_verified = EXCLUDED.is_verified, profile_data = EXCLUDED.profile_data,
                    content_stats = EXCLUDED.content_stats, engagement_metrics = EXCLUDED.engagement_metrics,
                    last_scraped_at = now(), updated_at = now(), scraping_status = 'completed'
                """,
                {
                    "u": job.username.lower(), "name": name, "followers": followers, "following": rng.randint(50, 3000),
                    "posts": posts, "bio": f"{name} - simulated profile", "verified": followers > 500_000,
                    "data": Jsonb({"simulated": True}),
                    "content": Jsonb({"reels": posts // 4, "images": posts - posts // 4}),
                    "engagement": Jsonb({"engagement_rate": round(rng.uniform(0.4, 9.0), 2)}),
                },
            )
        self.stats.completed += 1

    async def _release_in_flight(self) -> None:
        # A stopped worker did not really attempt the job: give it back as it was.
        jobs = list(self._in_flight.items())
        self._in_flight.clear()
        if not jobs:
            return
        try:
            async with asyncio.timeout(1.0):
                for job_id, attempts in jobs:
                    await self._execute(
                        "UPDATE queue SET status = 'PENDING', attempts = GREATEST(attempts - 1, 0), updated_at = now() "
                        "WHERE id = %s AND status = 'PROCESSING' AND attempts = %s",
                        (job_id, attempts),
                    )
        except (TimeoutError, psycopg.Error, PoolTimeout) as exc:
            log.warning("could not give back in-flight jobs: %s", one_line(exc), extra={"event": "sim_release_failed"})

    # -- retries and counts -------------------------------------------------

    async def _janitor(self, stop: asyncio.Event) -> None:
        stale_s = max(600.0, 2 * (JOB_SIMULATED_S[1] + STAGE_BOUNDARIES_S[0] / self.config.speed))
        while not await _sleep(stop, JANITOR_EVERY_S):
            retried = await self._guarded(self._retry_due)
            # A worker that died mid-job (a killed simulator elsewhere) leaves its row PROCESSING forever.
            await self._guarded(
                self._execute,
                "UPDATE queue SET status = 'PENDING', updated_at = now() "
                "WHERE status = 'PROCESSING' AND last_attempt < now() - %s * interval '1 second'",
                (stale_s,),
            )
            if retried:
                self.stats.retried += retried
                self._wake.set()

    async def _retry_due(self) -> int:
        """Back to PENDING: every FAILED row the model would retry whose backoff has passed."""
        async with self._pool.connection() as conn:
            rows = await (await conn.execute(_FAILED, (MAX_ATTEMPTS,))).fetchall()
            due = [
                row_id for row_id, attempts, last_attempt, now in rows
                if is_retry_eligible("FAILED", attempts)
                and last_attempt + timedelta(minutes=retry_backoff_minutes(attempts)) <= now
            ]
            if not due:
                return 0
            # Still FAILED: a row another writer moved meanwhile is left alone.
            cur = await conn.execute(
                "UPDATE queue SET status = 'PENDING', updated_at = now() WHERE id = ANY(%s) AND status = 'FAILED'",
                (due,),
            )
            return cur.rowcount

    async def _counter(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self._guarded(self._count)
            if await _sleep(stop, COUNT_EVERY_S):
                return

    async def _count(self) -> None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT status, count(*) FROM queue WHERE {ACTIVE} GROUP BY status"
            )
            counts: dict[str, int] = dict(await cur.fetchall())
        self.stats.pending, self.stats.processing = counts.get("PENDING", 0), counts.get("PROCESSING", 0)

    # -- plumbing -----------------------------------------------------------

    async def _execute(self, sql: str, params: tuple[Any, ...] | None = None) -> int:
        async with self._pool.connection() as conn:
            cur = await conn.execute(sql, params)
            return cur.rowcount

    async def _guarded(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Run one database step; a failure is logged (at most every 5 s) and the step skipped.

        A workload must outlive a restarted or unreachable database, so no database
        error ends a loop.
        """
        try:
            return await fn(*args)
        except (psycopg.Error, PoolTimeout) as exc:
            now = time.monotonic()
            if now - self._last_error_log > 5:
                self._last_error_log = now
                log.warning("simulator: database step failed: %s", one_line(exc), extra={"event": "sim_db_error"})
            await asyncio.sleep(0.5)
            return None


async def _sleep(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to ``seconds``; True when ``stop`` was set meanwhile."""
    if stop.is_set():
        return True
    if seconds <= 0:
        return False
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True
