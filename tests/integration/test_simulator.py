"""The simulated workload against a real database: queue order, compressed stages, the seed's backoff."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import psycopg

from demo.simulator import STAGE_BOUNDARIES_S, Simulator, WorkloadConfig

T = TypeVar("T")


@asynccontextmanager
async def running(database_url: str, config: WorkloadConfig) -> AsyncIterator[Simulator]:
    """A simulator working in the background until the block ends."""
    simulator = Simulator(database_url, config, seed=7)
    stop = asyncio.Event()
    task = asyncio.create_task(simulator.run(stop, startup_timeout_s=5))
    try:
        yield simulator
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def until(check: Callable[[], Awaitable[T | None]], timeout: float = 15.0) -> T:
    """Poll an async check until it returns something other than None."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        if (result := await check()) is not None:
            return result
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_workers_take_the_highest_priority_oldest_job_first(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as db:
        for name, priority, age in [("low_old", "LOW", 30), ("medium_new", "MEDIUM", 1), ("high_new", "HIGH", 1),
                                    ("medium_old", "MEDIUM", 20), ("weird_prio", "URGENT", 40)]:
            db.execute(
                "INSERT INTO queue (username, source, priority, request_id, timestamp) "
                "VALUES (%s, 'test', %s, %s, now() - %s * interval '1 second')",
                (name, priority, f"r-{name}", age),
            )
        config = WorkloadConfig(rate=0, workers=1, speed=2000, failure_ratio=0, initial=0)
        async with running(database_url, config):

            async def all_done() -> list[str] | None:
                rows = db.execute("SELECT username FROM primary_profiles ORDER BY created_at, id").fetchall()
                return [r[0] for r in rows] if len(rows) == 5 else None

            order = await until(all_done)
    # One worker: completion order is claim order. Unknown priorities rank with LOW, as in the seed.
    assert order == ["high_new", "medium_old", "medium_new", "weird_prio", "low_old"]


async def test_stages_are_compressed_by_backdating_last_attempt(database_url: str) -> None:
    speed = 60.0  # one stage per real second
    with psycopg.connect(database_url, autocommit=True) as db:
        config = WorkloadConfig(rate=0, workers=1, speed=speed, failure_ratio=0, initial=1)
        async with running(database_url, config):

            async def simulated_elapsed() -> float | None:
                row = db.execute(
                    "SELECT extract(epoch FROM now() - last_attempt)::float FROM queue WHERE status = 'PROCESSING'"
                ).fetchone()
                return row[0] if row and row[0] >= STAGE_BOUNDARIES_S[1] else None

            # Well before 120 real seconds, the API's clock says "analyzing_content" (>= 120 s).
            assert await until(simulated_elapsed, timeout=5) >= 120

            async def completed() -> tuple[str, int] | None:
                row = db.execute("SELECT status, attempts FROM queue").fetchone()
                return row if row and row[0] == "COMPLETED" else None

            assert await until(completed, timeout=10) == ("COMPLETED", 1)
            assert db.execute("SELECT count(*) FROM primary_profiles").fetchone() == (1,)


async def test_failures_retry_after_the_seeds_backoff_then_give_up(database_url: str) -> None:
    speed = 240.0  # the 2 and 4 minute backoffs take 0.5 and 1 s
    with psycopg.connect(database_url, autocommit=True) as db:
        config = WorkloadConfig(rate=0, workers=1, speed=speed, failure_ratio=1, initial=1)
        async with running(database_url, config) as simulator:

            async def first_failure() -> float | None:
                # The API's next_retry_time is last_attempt + 2^attempts minutes: it must be the real retry time.
                row = db.execute(
                    "SELECT extract(epoch FROM last_attempt + interval '2 minutes' - now())::float "
                    "FROM queue WHERE status = 'FAILED' AND attempts = 1"
                ).fetchone()
                return row[0] if row else None

            wait_s = await until(first_failure, timeout=5)
            assert 0 <= wait_s <= 120 / speed + 0.1

            async def gave_up() -> tuple[str, int, str] | None:
                row = db.execute("SELECT status, attempts, error_message FROM queue").fetchone()
                return row if row and row[1] == 3 and row[0] == "FAILED" else None

            status, attempts, error = await until(gave_up, timeout=15)
            await asyncio.sleep(0.5 + 8 * 60 / speed)  # past the next backoff: no fourth attempt
            assert db.execute("SELECT status, attempts FROM queue").fetchone() == ("FAILED", 3)
            assert error
            assert simulator.stats.failed == 3 and simulator.stats.retried == 2
