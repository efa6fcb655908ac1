"""The benchmark's data: a fresh database and Redis key prefix of its own, loaded fast, removed at the end.

Rows are generated inside Postgres (`INSERT ... SELECT generate_series`) with the
change-capture triggers off (`session_replication_role = replica`): the bulk
load is not a change to follow, and `profile-status resync` projects it anyway.
"""

from __future__ import annotations

import contextlib
import random
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis
from psycopg.conninfo import make_conninfo

from bench.config import PROJECT_ROOT
from bench.procs import child_env, python

COMMAND_TIMEOUT_S = 300.0
SCAN_COUNT = 1000

# Statuses by `(i * 37) % 100` (37 is prime to 100, so every 100 consecutive rows hold the
# exact mix): 60% PENDING, 25% PROCESSING, 10% COMPLETED, 5% FAILED, as a busy queue looks.
_API_STATUS = """CASE WHEN (i * 37) %% 100 < 60 THEN 'PENDING' WHEN (i * 37) %% 100 < 85 THEN 'PROCESSING'
                      WHEN (i * 37) %% 100 < 95 THEN 'COMPLETED' ELSE 'FAILED' END"""
# A queue where every row is active: 80% PENDING, 20% PROCESSING.
_ACTIVE_STATUS = "CASE WHEN (i * 37) %% 100 < 80 THEN 'PENDING' ELSE 'PROCESSING' END"

_LOAD_QUEUE = """
INSERT INTO queue (username, source, priority, status, timestamp, last_attempt, attempts,
                   error_message, request_id, created_at, updated_at)
SELECT name, 'bench',
       CASE WHEN r_priority < 0.15 THEN 'HIGH' WHEN r_priority < 0.50 THEN 'MEDIUM' ELSE 'LOW' END,
       status, ts,
       CASE WHEN status = 'PENDING' THEN NULL ELSE now() - r_attempt * interval '600 seconds' END,
       CASE status WHEN 'PENDING' THEN 0 WHEN 'FAILED' THEN 1 + (i %% 3) ELSE 1 END,
       CASE WHEN status = 'FAILED' THEN 'Profile not accessible' END,
       'bench-' || i, ts, ts
FROM (
    SELECT i, {prefix} || lpad(i::text, 7, '0') AS name, {status} AS status,
           random() AS r_priority, random() AS r_attempt,
           now() - random() * interval '2 hours' AS ts
    FROM generate_series(1, %(rows)s) AS i
) AS generated
"""
_LOAD_PROFILES = """
INSERT INTO primary_profiles (username, full_name, followers_count, following_count, posts_count, bio,
                              created_at, updated_at, last_scraped_at, scraping_status)
SELECT username, 'Bench ' || username, (random() * 1e6)::int, (random() * 1e3)::int, (random() * 5e3)::int,
       'A benchmark profile', created, created, created, 'completed'
FROM (SELECT username, now() - random() * interval '72 hours' AS created
      FROM queue WHERE status = 'COMPLETED' ORDER BY username LIMIT %(profiles)s) AS done
"""


@dataclass(frozen=True)
class Names:
    """Usernames of a loaded data set, by kind, for building request mixes and updates."""

    queued: list[str]
    completed: list[str]
    active: list[str]


def _admin(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True)


@contextlib.contextmanager
def bench_database(admin_url: str) -> Iterator[str]:
    """`CREATE DATABASE bench_<random>`, migrated with `profile-status migrate`; dropped afterwards."""
    name = f"bench_{uuid.uuid4().hex[:10]}"
    with _admin(admin_url) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = make_conninfo(admin_url, dbname=name)
    try:
        run_cli(["migrate"], url)
        yield url
    finally:
        with _admin(admin_url) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def bench_prefix(redis_url: str) -> Iterator[str]:
    """A Redis key prefix of this run's own; every key under it is deleted afterwards."""
    prefix = f"bench{uuid.uuid4().hex[:8]}:"
    try:
        yield prefix
    finally:
        delete_prefix(redis_url, prefix)


def delete_prefix(redis_url: str, prefix: str) -> int:
    """UNLINK every key under `prefix` (SCAN, never KEYS: the server is shared)."""
    client = redis.Redis.from_url(redis_url)
    deleted = 0
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}*", count=SCAN_COUNT):
            batch.append(key)
            if len(batch) >= SCAN_COUNT:
                deleted += int(client.unlink(*batch))
                batch = []
        if batch:
            deleted += int(client.unlink(*batch))
    finally:
        client.close()
    return deleted


def load(url: str, rows: int, profiles: int, *, active_only: bool = False) -> None:
    """`rows` queue rows with distinct usernames and `profiles` completed profiles, then VACUUM ANALYZE."""
    status, prefix = (_ACTIVE_STATUS, "'a'") if active_only else (_API_STATUS, "'u'")
    with psycopg.connect(url) as conn:
        # Triggers off for the bulk load: resync projects it; the change log stays empty.
        conn.execute("SET session_replication_role = replica")
        conn.execute("SELECT setseed(0.42)")
        conn.execute(_LOAD_QUEUE.format(prefix=prefix, status=status), {"rows": rows})
        if profiles:
            conn.execute(_LOAD_PROFILES, {"profiles": profiles})
        conn.commit()
    with _admin(url) as conn:
        conn.execute("VACUUM ANALYZE queue")
        conn.execute("VACUUM ANALYZE primary_profiles")


def names(url: str, limit: int) -> Names:
    """Up to `limit` usernames of each kind, in a stable pseudo-random order."""
    with psycopg.connect(url) as conn:

        def column(query: str) -> list[str]:
            return [r[0] for r in conn.execute(query, (limit,)).fetchall()]

        return Names(
            queued=column(
                "SELECT lower(username) FROM queue WHERE lower(username) NOT IN"
                " (SELECT lower(username) FROM primary_profiles) ORDER BY md5(username) LIMIT %s"
            ),
            completed=column("SELECT lower(username) FROM primary_profiles ORDER BY md5(username) LIMIT %s"),
            active=column(
                "SELECT lower(username) FROM queue WHERE status IN ('PENDING', 'PROCESSING')"
                " ORDER BY md5(username) LIMIT %s"
            ),
        )


def request_mix(known: Names, count: int, run: str = "", seed: int = 42) -> list[str]:
    """`count` status paths: 70% queued usernames, 20% completed profiles, 10% unknown names, shuffled.

    Unknown names carry `run`: each measured run polls names no earlier run did,
    so negative-cache entries an earlier run created cannot expire in the middle
    of this one (60 s TTL) and turn it into a burst of misses.
    """
    n_completed, n_unknown = count * 2 // 10, count // 10
    n_queued = count - n_completed - n_unknown

    def take(pool: Sequence[str], n: int) -> list[str]:
        return [pool[i % len(pool)] for i in range(n)] if pool else []

    usernames = (
        take(known.queued, n_queued)
        + take(known.completed, n_completed)
        + [f"nobody_{run}{i:06d}" for i in range(n_unknown)]
    )
    random.Random(seed).shuffle(usernames)
    return [f"/api/profile/{name}/status" for name in usernames]


def write_paths(path: Path, paths: Sequence[str], etags: dict[str, str] | None = None) -> Path:
    """wrk's input: one path a line, with `\\t<ETag>` when the request should carry If-None-Match."""
    lines = [f"{p}\t{etags[p]}" if etags and p in etags else p for p in paths]
    path.write_text("\n".join(lines) + "\n")
    return path


def run_cli(
    args: Sequence[str],
    database_url: str,
    prefix: str | None = None,
    redis_url: str | None = None,
    wrap: Sequence[str] = (),
) -> str:
    """Run `profile-status ARGS` (behind `wrap`, e.g. a profiler) against the bench database and prefix.

    Returns its stdout; raises with its stderr if it fails.
    """
    env = child_env({"DATABASE_URL": database_url})
    if prefix is not None and redis_url is not None:
        env.update(REDIS_URL=redis_url, PROFILE_STATUS_KEY_PREFIX=prefix)
    done = subprocess.run(
        [*wrap, *python("-m", "profile_status.cli", *args)],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"profile-status {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


@dataclass(frozen=True)
class Resync:
    """One timed `profile-status resync`, and what Redis held afterwards."""

    seconds: float
    usernames: int
    used_memory_delta: int
    # MEMORY USAGE under the prefix: document keys as "documents", every other key by its own name.
    by_key: dict[str, int]
    prefix_keys: int

    @property
    def prefix_bytes(self) -> int:
        """Everything under the prefix."""
        return sum(self.by_key.values())


def timed_resync(database_url: str, prefix: str, redis_url: str, usernames: int) -> Resync:
    """`profile-status resync` on an empty prefix, timed; Redis memory before and after."""
    client = redis.Redis.from_url(redis_url)
    try:
        before = int(client.info("memory")["used_memory"])
        start = time.perf_counter()
        run_cli(["resync"], database_url, prefix, redis_url)
        seconds = time.perf_counter() - start
        after = int(client.info("memory")["used_memory"])
        by_key, keys = prefix_memory(client, prefix)
    finally:
        client.close()
    return Resync(seconds, usernames, after - before, by_key, keys)


def prefix_memory(client: redis.Redis, prefix: str) -> tuple[dict[str, int], int]:
    """Bytes under `prefix` by `MEMORY USAGE ... SAMPLES 0` (exact, blind to other tenants), and the key count.

    Document keys are summed as "documents"; the service's own keys (`@...`: no
    username contains `@`) each under its name.
    """
    by_key: dict[str, int] = {}
    keys = 0
    batch: list[bytes] = []

    def flush() -> None:
        pipe = client.pipeline(transaction=False)
        for key in batch:
            pipe.memory_usage(key, samples=0)
        for key, size in zip(batch, pipe.execute(), strict=True):
            name = key.decode()[len(prefix):]
            kind = name.split("{", 1)[0].split(":", 1)[0] if name.startswith("@") else "documents"
            by_key[kind] = by_key.get(kind, 0) + int(size or 0)
        batch.clear()

    for key in client.scan_iter(match=f"{prefix}*", count=SCAN_COUNT):
        batch.append(key)
        keys += 1
        if len(batch) >= SCAN_COUNT:
            flush()
    if batch:
        flush()
    return by_key, keys
