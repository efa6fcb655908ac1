"""Fault injection: Redis converges to Postgres whatever happens in between (contract section 5).

Real processes and servers: the projector runs as a child process and is killed
with SIGKILL, its Postgres sessions are terminated, its Redis is stopped,
restarted empty and flushed, while a writer keeps committing. After each fault
`verify` must find zero differences.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator

import orjson
import psycopg
import pytest
import redis

from demo.embedded import EmbeddedRedis, free_port
from shared.redis_store.keys import Keys
from shared.settings import Settings
from tests.integration.convergence import differences, wait_converged
from tests.integration.stack import ProjectorProcess, eventually
from tests.workload import Workload, WriterThread

pytestmark = pytest.mark.slow


def _seed() -> int:
    seed = int(os.environ.get("PROFILE_STATUS_TEST_SEED") or random.randrange(2**32))
    print(f"\nworkload seed: {seed} (rerun with PROFILE_STATUS_TEST_SEED={seed})")
    return seed


@pytest.fixture
def own_redis() -> Iterator[EmbeddedRedis]:
    """A Redis of this test's own, which it may stop, restart and flush."""
    server = EmbeddedRedis(port=free_port())  # a fixed port, so a restart comes back at the same address
    server.start()
    yield server
    server.stop()


@pytest.fixture
def proc(settings: Settings) -> Iterator[ProjectorProcess]:
    """A projector child process."""
    child = ProjectorProcess(settings).start()
    yield child
    if child.alive():
        child.stop()


def _heartbeat(settings: Settings) -> None:
    client = redis.Redis.from_url(settings.redis_url)
    try:
        eventually(lambda: client.exists(settings.keys().heartbeat), timeout=20)
    finally:
        client.close()


def test_kill_9_mid_batch_under_continuous_writes(settings: Settings, database_url: str) -> None:
    writer = WriterThread(database_url, _seed()).start()
    child = ProjectorProcess(settings).start()
    _heartbeat(settings)
    for _ in range(3):
        time.sleep(random.uniform(0.3, 1.0))
        child.kill9()
        time.sleep(0.3)  # changes committed while no projector runs
        child = ProjectorProcess(settings).start()
    committed = writer.stop()
    converge = wait_converged(settings)
    child.stop()
    print(f"3 kills, {committed} transactions, converged {converge:.2f} s after the writer stopped")


def test_listener_sessions_terminated_under_load(settings: Settings, database_url: str, proc: ProjectorProcess) -> None:
    _heartbeat(settings)
    writer = WriterThread(database_url, _seed()).start()
    # Sessions not cut before: a terminated backend lingers in pg_stat_activity for a moment.
    sessions = (
        "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'profile-status-%%'"
        " AND datname = current_database() AND pid <> ALL(%s::int[])"
    )
    cut: list[int] = []
    with psycopg.connect(database_url, autocommit=True) as admin:
        for _ in range(3):
            # Wait until the projector is back (it reconnects with backoff) before cutting it again.
            eventually(lambda: len(admin.execute(sessions, (cut,)).fetchall()) >= 2, timeout=20)
            time.sleep(0.3)
            pids = [pid for (pid,) in admin.execute(sessions, (cut,)).fetchall()]
            killed = [pid for pid in pids if admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)]
            assert len(killed) >= 2, killed
            cut += killed
    writer.stop()
    converge = wait_converged(settings)
    assert proc.alive()
    print(f"3 terminations, converged in {converge:.2f} s")


def test_redis_down_then_back_empty(settings: Settings, database_url: str, own_redis: EmbeddedRedis) -> None:
    ours = settings.model_copy(update={"redis_url": own_redis.url})
    child = ProjectorProcess(ours).start()
    _heartbeat(ours)
    writer = WriterThread(database_url, _seed()).start()
    time.sleep(0.5)
    own_redis.stop()
    time.sleep(2)  # commits keep coming while Redis is away
    own_redis.start()  # same port, no data
    committed = writer.stop()
    started = time.monotonic()
    converge = wait_converged(ours)
    assert child.alive(), "the projector must survive a Redis outage"
    child.stop()
    print(f"Redis outage with {committed} transactions: converged {converge:.2f} s after the writer stopped ({time.monotonic() - started:.2f})")


def test_flushdb_while_running(settings: Settings, database_url: str, own_redis: EmbeddedRedis) -> None:
    ours = settings.model_copy(update={"redis_url": own_redis.url})
    child = ProjectorProcess(ours).start()
    writer = WriterThread(database_url, _seed()).start()
    _heartbeat(ours)
    time.sleep(1)
    client = redis.Redis.from_url(own_redis.url)
    client.flushdb()
    flushed = time.monotonic()
    writer.stop()
    converge = wait_converged(ours)
    client.close()
    assert child.alive()
    child.stop()
    print(f"FLUSHDB: converged {time.monotonic() - flushed:.2f} s after the flush ({converge:.2f} s after the writer stopped)")


def _contents(client: redis.Redis, keys: Keys) -> dict[str, dict[str, object]]:
    out = {}
    for key in client.scan_iter(match=keys.document_pattern, count=1000):
        doc = orjson.loads(client.get(key) or b"{}")
        out[key.decode()] = {k: v for k, v in doc.items() if k not in ("version", "projected_at")}
    return out


def test_replaying_the_change_log_changes_no_document(
    settings: Settings, database_url: str, db: psycopg.Connection, rds: redis.Redis, proc: ProjectorProcess
) -> None:
    keys = settings.keys()
    workload = Workload(_seed())
    for _ in range(300):
        workload.transaction(db)
    wait_converged(settings)
    before = _contents(rds, keys)
    queue_before = [rds.zrange(key, 0, -1) for key in keys.queue_sets(0)]
    db.execute(
        "INSERT INTO profile_status_changes_v1 (username, source)"
        " SELECT lower(username), 'replay' FROM queue UNION ALL SELECT lower(username), 'replay' FROM primary_profiles"
    )
    db.execute("NOTIFY profile_status_v1")
    eventually(lambda: db.execute("SELECT count(*) FROM profile_status_changes_v1").fetchone() == (0,), timeout=20)
    assert _contents(rds, keys) == before
    assert [rds.zrange(key, 0, -1) for key in keys.queue_sets(0)] == queue_before


def test_old_versions_are_rejected(settings: Settings, db: psycopg.Connection, rds: redis.Redis, proc: ProjectorProcess) -> None:
    import asyncio

    from shared.model.document import StatusDocument
    from shared.model.rules import Projection
    from shared.wiring import open_store

    keys = settings.keys()
    db.execute("INSERT INTO queue (username, source, priority, request_id) VALUES ('replayed', 't', 'HIGH', 'r-1')")
    eventually(lambda: rds.exists(keys.document("replayed")))
    first = StatusDocument.model_validate_json(rds.get(keys.document("replayed")) or b"")
    db.execute("UPDATE queue SET status = 'PROCESSING', last_attempt = now() WHERE username = 'replayed'")
    eventually(lambda: b'"PROCESSING"' in (rds.get(keys.document("replayed")) or b""))
    current = rds.get(keys.document("replayed"))

    async def replay() -> int:
        async with open_store(settings) as store:
            return (await store.write([Projection(first, [first.queue.queue_member or ""])])).stale  # type: ignore[union-attr]

    assert asyncio.run(replay()) == 1
    assert rds.get(keys.document("replayed")) == current
    assert differences(settings).count == 0


def test_randomized_differential_with_kills(settings: Settings, database_url: str) -> None:
    seed = _seed()
    rng = random.Random(seed)
    workload = Workload(seed)
    child = ProjectorProcess(settings).start()
    kills = 0
    with psycopg.connect(database_url, autocommit=True) as conn:
        for step in range(1500):
            workload.transaction(conn)
            if rng.random() < 0.004:
                child.kill9()
                kills += 1
                child = ProjectorProcess(settings).start()
    converge = wait_converged(settings)
    child.stop()
    print(f"seed {seed}: {workload.transactions} transactions, {kills} kills, converged in {converge:.2f} s")


@pytest.mark.long  # a minute or two of inserting and draining; test_resilience drains 30,000 by default
def test_bulk_update_of_100k_rows(settings: Settings, db: psycopg.Connection, proc: ProjectorProcess) -> None:
    db.execute(
        "INSERT INTO queue (username, source, priority, request_id, timestamp)"
        " SELECT 'flood_' || i, 't', (ARRAY['HIGH', 'MEDIUM', 'LOW'])[1 + i % 3], 'flood-' || i,"
        " now() - i * interval '1 millisecond' FROM generate_series(1, 100000) AS i"
    )
    wait_converged(settings, timeout=120)
    started = time.monotonic()
    db.execute("UPDATE queue SET status = 'PROCESSING', last_attempt = now(), attempts = 1")

    def drained() -> bool:
        proc.sample_rss()
        return db.execute("SELECT count(*) FROM profile_status_changes_v1").fetchone() == (0,)

    eventually(drained, timeout=120, interval=0.1)
    applied = time.monotonic() - started
    converge = wait_converged(settings, timeout=60)
    print(f"100,000-row UPDATE applied in {applied:.2f} s; peak projector RSS {proc.sample_rss() / 1024:.1f} MiB")
    assert converge < 60
