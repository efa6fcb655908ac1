"""Sizes and durations of one benchmark run: the full run and the `--quick` one."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


@dataclass(frozen=True)
class BenchConfig:
    """Everything that sizes a run. `database_url` is an admin URL: bench databases are created on it."""

    database_url: str
    redis_url: str
    quick: bool = False
    # The API data set.
    queue_rows: int = 100_000
    profiles: int = 10_000
    # Distinct paths wrk polls (70% queued, 20% completed, 10% unknown names).
    paths: int = 20_000
    # wrk: fixed concurrency, one thread, after a warm-up with the same load (our API starts cold before it).
    connections: int = 64
    warmup_s: int = 10
    duration_s: int = 10
    # Rounds of the interleaved runs; each figure is the median of its rounds (see throughput.run).
    api_rounds: int = 2
    # Changes committed per second during extra runs of our API (every change moves queue positions).
    api_write_rates: tuple[int, ...] = (10, 100)
    # Projector: lag at a fixed commit rate.
    lag_rate: int = 1_000
    lag_s: float = 10.0
    # Projector: one backlog of single-row updates, drained (sustained throughput).
    drain_updates: int = 20_000
    # Projector: per-change cost, small vs big active queue, in rounds of committed updates.
    small_active: int = 1_000
    big_active: int = 1_000_000
    round_updates: int = 1_000
    rounds: int = 20
    # Projector partitions: one backlog drained by 1, 2 and 4 projectors sharing them.
    partitions: int = 4
    projector_counts: tuple[int, ...] = (1, 2, 4)
    partition_rows: int = 100_000
    partition_updates: int = 40_000
    # py-spy profiles of the API and the projector (extra runs, not the measured ones).
    profile: bool = False

    @property
    def per_change_updates(self) -> int:
        """Updates applied in each per-change measurement."""
        return self.round_updates * self.rounds


def full(database_url: str, redis_url: str, *, profile: bool = False) -> BenchConfig:
    """The configuration BENCHMARKS.md reports (about ten minutes on two cores)."""
    return BenchConfig(database_url=database_url, redis_url=redis_url, profile=profile)


def quick(database_url: str, redis_url: str, *, profile: bool = False) -> BenchConfig:
    """The same steps on small sizes with 1 s wrk runs: proves the benchmark runs (well under a minute)."""
    return replace(
        full(database_url, redis_url, profile=profile),
        quick=True,
        queue_rows=1_000,
        profiles=100,
        paths=500,
        warmup_s=1,
        duration_s=1,
        api_write_rates=(10,),
        api_rounds=1,
        lag_rate=200,
        lag_s=1.0,
        drain_updates=1_000,
        small_active=100,
        big_active=10_000,
        round_updates=100,
        rounds=2,
        partition_rows=2_000,
        partition_updates=500,
    )


def env_urls() -> tuple[str, str]:
    """The admin database URL and the Redis URL from the environment (as the project's commands read them)."""
    return os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL), os.environ.get("REDIS_URL", DEFAULT_REDIS_URL)
