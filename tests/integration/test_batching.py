"""How the projector groups a steady trickle of changes into batches."""

from __future__ import annotations

import time

import orjson
import psycopg
import redis

from projector import metrics
from shared.settings import Settings
from tests.integration.rows import add_job
from tests.integration.stack import ProjectorThread, eventually

CHANGES = 24
SPACING_S = 0.04


def _batches() -> float:
    return metrics.BATCHES._value.get()


def _projected(rds: redis.Redis, settings: Settings, username: str, status: str) -> bool:
    raw = rds.get(settings.keys().document(username))
    return raw is not None and (orjson.loads(raw)["queue"] or {}).get("status") == status


def _trickle(settings: Settings, db: psycopg.Connection, rds: redis.Redis) -> tuple[float, float]:
    """Commit `CHANGES` changes one by one, `SPACING_S` apart; (batches it took, seconds from first commit to last applied)."""
    projector = ProjectorThread(settings).start()
    try:
        add_job(db, "trickle", status="PENDING")
        eventually(lambda: _projected(rds, settings, "trickle", "PENDING"))
        before, started = _batches(), time.monotonic()
        status = "PENDING"
        for _ in range(CHANGES):
            status = "PROCESSING" if status == "PENDING" else "PENDING"
            db.execute("UPDATE queue SET status = %s, last_attempt = now() WHERE username = 'trickle'", (status,))
            time.sleep(SPACING_S)
        eventually(lambda: _projected(rds, settings, "trickle", status))
        eventually(lambda: _batches() > before)  # counted after the batch's change-log entries are forgotten
        return _batches() - before, time.monotonic() - started
    finally:
        projector.stop()


def test_a_steady_trickle_is_applied_a_few_changes_at_a_time(
    settings: Settings, db: psycopg.Connection, rds: redis.Redis
) -> None:
    interval_s = 0.5
    paced = settings.model_copy(update={"batch_interval_ms": interval_s * 1000})
    batches, elapsed = _trickle(paced, db, rds)
    # At most one batch per interval, plus the first change's (taken at once) and the safety poll's.
    assert batches <= 2 + elapsed / interval_s + elapsed / settings.safety_poll_s, (batches, elapsed)


def test_without_an_interval_each_change_is_its_own_batch(settings: Settings, db: psycopg.Connection, rds: redis.Redis) -> None:
    # The same trickle, unpaced: proves the test above measures the pacing, not the trickle.
    batches, _ = _trickle(settings.model_copy(update={"batch_interval_ms": 0}), db, rds)
    assert batches >= CHANGES // 2, batches
