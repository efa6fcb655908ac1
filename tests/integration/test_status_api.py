"""The status endpoint end to end: rows written in Postgres, answers read over HTTP.

The real projector and the real API run against this test's own database and
Redis prefix; every expectation is computed from Postgres by the shared rules.
"""

from __future__ import annotations

import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
import redis
from prometheus_client import REGISTRY

from shared.settings import Settings
from tests.integration.rows import add_job, add_profile, expected_data
from tests.integration.stack import ApiThread, ProjectorThread, eventually

VOLATILE = {"processing_duration_seconds", "profile_age_hours"}
pytestmark = pytest.mark.usefixtures("projector")


def _stable(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in VOLATILE}


def status(http: httpx.Client, username: str) -> dict[str, Any]:
    """The `data` of a 200 answer."""
    response = http.get(f"/api/profile/{username}/status")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    return body["data"]


def assert_answers(http: httpx.Client, db: psycopg.Connection, username: str, timeout: float = 5.0) -> dict[str, Any]:
    """Wait until the endpoint answers what Postgres says (clock-moving durations aside)."""

    def check() -> dict[str, Any]:
        got = status(http, username)
        want = expected_data(db, username.lower(), datetime.now(UTC))
        assert _stable(got) == _stable(want)
        return got

    return eventually(check, timeout)


def test_every_state_answers_what_postgres_says(http: httpx.Client, db: psycopg.Connection) -> None:
    now = datetime.now(UTC)
    add_profile(db, "Done_User", followers=125000, posts=847)
    add_job(db, "waiting", status="PENDING", priority="MEDIUM")
    add_job(db, "working", status="PROCESSING", last_attempt=now - timedelta(seconds=100), attempts=1)
    add_job(db, "finished", status="COMPLETED", attempts=1, last_attempt=now)
    add_job(db, "broken", status="FAILED", attempts=2, last_attempt=now, error_message="private profile")
    add_job(db, "given_up", status="FAILED", attempts=3, last_attempt=now)

    done = assert_answers(http, db, "done_user")
    assert done["status"] == "exists" and done["followers_count"] == 125000
    assert done["profile_url"] == "/api/profile/done_user"
    working = assert_answers(http, db, "working")
    assert working["processing_stage"] == "fetching_profile_data"
    assert working["queue_position"] == 1 and working["total_queue_size"] == 2
    assert assert_answers(http, db, "waiting")["queue_position"] == 2
    assert assert_answers(http, db, "finished")["estimated_seconds_remaining"] == 0
    broken = assert_answers(http, db, "broken")
    assert broken["next_action"] == "retry_processing" and broken["error_message"] == "private profile"
    assert assert_answers(http, db, "given_up")["next_action"] == "contact_support"
    assert status(http, "nobody_here")["status"] == "NOT_FOUND"


def test_positions_shift_as_jobs_complete(http: httpx.Client, db: psycopg.Connection) -> None:
    names = [f"pos_user_{i}" for i in range(5)]
    for name in names:
        add_job(db, name, priority="LOW")
    add_job(db, "vip", priority="HIGH")
    eventually(lambda: status(http, names[-1])["queue_position"] == 6)
    assert status(http, "vip")["queue_position"] == 1
    db.execute("UPDATE queue SET status = 'COMPLETED' WHERE username IN ('vip', 'pos_user_0')")
    eventually(lambda: status(http, names[-1])["queue_position"] == 4)
    # While the first projection runs, positions are counted in Postgres and can show a change
    # before its documents reach Redis (within the freshness bound): wait for vip's, too.
    eventually(lambda: status(http, "vip")["queue_position"] is None)
    for name in names[1:]:
        assert_answers(http, db, name)


def test_held_positions_follow_a_moving_queue(http: httpx.Client, db: psycopg.Connection) -> None:
    """Jobs added, removed, picked up, put back and finished ahead of and behind the followed
    ones: every poll answers what Postgres counts, and the process cache moved the positions
    it held instead of reading them all again."""
    rng = random.Random(13)
    followed = [f"held_{i}" for i in range(6)]
    for i, name in enumerate(followed):
        add_job(db, name, priority=("HIGH", "MEDIUM", "LOW")[i % 3])
    for name in followed:
        assert_answers(http, db, name)
    shifted = REGISTRY.get_sample_value("profile_status_api_positions_shifted_total") or 0.0
    others: list[str] = []
    for step in range(16):
        move = rng.choice(["add", "add", "remove", "pick_up", "put_back", "finish"])
        if move == "add" or not others:
            others.append(f"mover_{step}")
            add_job(db, others[-1], priority=rng.choice(["HIGH", "MEDIUM", "LOW", "URGENT"]))
        elif move == "remove":
            db.execute("DELETE FROM queue WHERE username = %s", (others.pop(rng.randrange(len(others))),))
        elif move == "finish":
            db.execute("UPDATE queue SET status = 'COMPLETED' WHERE username = %s", (others.pop(0),))
        else:
            status_now = "PROCESSING" if move == "pick_up" else "PENDING"
            db.execute("UPDATE queue SET status = %s WHERE username = %s", (status_now, rng.choice(others)))
        for name in followed:
            assert_answers(http, db, name)
    assert (REGISTRY.get_sample_value("profile_status_api_positions_shifted_total") or 0.0) > shifted


def test_mixed_case_names_and_several_rows(http: httpx.Client, db: psycopg.Connection) -> None:
    old = datetime.now(UTC) - timedelta(hours=2)
    add_job(db, "Mike_1", status="FAILED", attempts=1, timestamp=old, last_attempt=old)
    add_job(db, "MIKE_1", status="PENDING", priority="LOW")
    data = assert_answers(http, db, "mike_1")
    assert data["status"] == "PENDING"
    assert _stable(status(http, "@MiKe_1")) == _stable(data)
    add_profile(db, "mike_1")
    eventually(lambda: status(http, "Mike_1")["status"] == "exists")


def test_deletes_and_renames(http: httpx.Client, db: psycopg.Connection) -> None:
    add_job(db, "leaving")
    add_job(db, "old_name", status="PROCESSING", last_attempt=datetime.now(UTC))
    eventually(lambda: status(http, "leaving")["status"] == "PENDING")
    eventually(lambda: status(http, "old_name")["status"] == "PROCESSING")
    db.execute("DELETE FROM queue WHERE username = 'leaving'")
    db.execute("UPDATE queue SET username = 'New_Name' WHERE username = 'old_name'")
    eventually(lambda: status(http, "leaving")["status"] == "NOT_FOUND")
    eventually(lambda: status(http, "old_name")["status"] == "NOT_FOUND")
    assert assert_answers(http, db, "new_name")["status"] == "PROCESSING"
    db.execute("DELETE FROM queue")
    eventually(lambda: status(http, "new_name")["status"] == "NOT_FOUND")


def test_truncate_is_followed(http: httpx.Client, db: psycopg.Connection) -> None:
    add_job(db, "truncated")
    add_profile(db, "profiled")
    eventually(lambda: status(http, "truncated")["status"] == "PENDING")
    eventually(lambda: status(http, "profiled")["status"] == "exists")
    db.execute("TRUNCATE queue")
    db.execute("TRUNCATE primary_profiles")
    eventually(lambda: status(http, "truncated")["status"] == "NOT_FOUND")
    eventually(lambda: status(http, "profiled")["status"] == "NOT_FOUND")


def test_bulk_update_of_ten_thousand_rows_converges(http: httpx.Client, db: psycopg.Connection) -> None:
    db.execute(
        "INSERT INTO queue (username, source, priority, request_id, timestamp)"
        " SELECT 'bulk_' || i, 'test', 'LOW', 'bulk-' || i, now() - (i || ' seconds')::interval"
        " FROM generate_series(1, 10000) AS i"
    )
    eventually(lambda: status(http, "bulk_1")["queue_position"] == 10000, timeout=60)
    started = time.monotonic()
    db.execute("UPDATE queue SET status = 'PROCESSING', last_attempt = now(), attempts = 1")
    eventually(lambda: status(http, "bulk_1")["status"] == "PROCESSING", timeout=60)
    eventually(lambda: status(http, "bulk_10000")["status"] == "PROCESSING", timeout=60)
    elapsed = time.monotonic() - started
    print(f"\n10,000-row UPDATE visible everywhere after {elapsed:.2f} s")
    for name in ("bulk_1", "bulk_5000", "bulk_9999"):
        assert_answers(http, db, name)


def test_a_committed_change_is_visible_within_a_second(http: httpx.Client, db: psycopg.Connection) -> None:
    lags = []
    add_job(db, "fresh_user", status="PENDING")
    eventually(lambda: status(http, "fresh_user")["status"] == "PENDING")
    for attempt in range(20):
        target = "PROCESSING" if attempt % 2 == 0 else "PENDING"
        db.execute("UPDATE queue SET status = %s, last_attempt = now() WHERE username = 'fresh_user'", (target,))
        committed = time.monotonic()
        eventually(lambda: status(http, "fresh_user")["status"] == target, timeout=1.0, interval=0.005)
        lags.append(time.monotonic() - committed)
    print(f"\ncommit-to-visible: median {statistics.median(lags) * 1000:.1f} ms, worst {max(lags) * 1000:.1f} ms")


def test_bad_rows_do_not_break_anything(http: httpx.Client, db: psycopg.Connection) -> None:
    db.execute("ALTER TABLE queue ALTER COLUMN priority DROP NOT NULL")
    future = datetime.now(UTC) + timedelta(hours=1)
    add_job(db, "odd_status", status="PAUSED")
    add_job(db, "no_priority", priority=None)  # type: ignore[arg-type]
    add_job(db, "no_attempt", status="PROCESSING", last_attempt=None, attempts=None)
    add_job(db, "time_traveller", status="PROCESSING", last_attempt=future, timestamp=future)
    odd = assert_answers(http, db, "odd_status")
    assert (odd["status"], odd["processing_stage"], odd["next_action"]) == ("PAUSED", "unknown", "check_system_status")
    assert odd["recommended_polling_interval"] == "60 seconds"
    assert assert_answers(http, db, "no_priority")["priority"] is None
    starting = assert_answers(http, db, "no_attempt")
    assert (starting["processing_stage"], starting["attempts"]) == ("starting", 0)
    assert starting["recommended_polling_interval"] == "30 seconds"
    traveller = status(http, "time_traveller")
    assert traveller["processing_duration_seconds"] is None  # clamped to 0, sent as the seed does
    assert (traveller["processing_stage"], traveller["recommended_polling_interval"]) == ("initializing", "15 seconds")


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        ("%00", "Invalid characters in username"),
        ("..%2F", "Invalid characters in username"),
        ("a%2Fb", "Invalid characters in username"),
        ("%F0%9F%98%80", "Invalid characters in username"),
        ("x" * 31, "Username too long (max 30 characters)"),
        ("%20%20", "Username is required"),
        ("", "Username is required"),
        ("@", "Username is required"),
        ("john%20doe", "Invalid characters in username"),
        ("john-doe", "Invalid characters in username"),
    ],
)
def test_invalid_usernames_get_400(http: httpx.Client, raw: str, detail: str) -> None:
    response = http.get(f"/api/profile/{raw}/status")
    assert response.status_code == 400
    assert response.json() == {"success": False, "detail": detail}
    assert response.headers["cache-control"] == "no-store"


def test_a_miss_reads_through_and_never_says_not_found_wrongly(
    db: psycopg.Connection, rds: redis.Redis, settings: Settings
) -> None:
    # Without the process cache, which would keep answering from memory.
    server = ApiThread(settings.model_copy(update={"local_cache": False})).start()
    try:
        with server.client() as http:
            _miss_path(http, db, rds, settings)
    finally:
        server.stop()


def _miss_path(http: httpx.Client, db: psycopg.Connection, rds: redis.Redis, settings: Settings) -> None:
    keys = settings.keys()
    add_job(db, "evicted", status="PENDING")
    eventually(lambda: status(http, "evicted")["status"] == "PENDING")
    rds.delete(keys.document("evicted"))
    assert assert_answers(http, db, "evicted")["queue_position"] == 1
    assert rds.exists(keys.document("evicted"))  # written back on the way
    assert status(http, "never_seen")["status"] == "NOT_FOUND"
    assert 0 < rds.ttl(keys.document("never_seen")) <= settings.not_found_ttl_s
    assert rds.ttl(keys.document("evicted")) > settings.not_found_ttl_s


def test_documents_have_ttls_and_the_projector_a_heartbeat(
    http: httpx.Client, db: psycopg.Connection, rds: redis.Redis, settings: Settings
) -> None:
    keys = settings.keys()
    add_job(db, "ttl_user")
    eventually(lambda: rds.exists(keys.document("ttl_user")))
    assert 0 < rds.ttl(keys.document("ttl_user")) <= settings.document_ttl_s
    eventually(lambda: 0 < rds.ttl(keys.heartbeat) <= settings.heartbeat_ttl_s)
    assert http.get("/healthz").status_code == 200
    ready = eventually(lambda: http.get("/readyz").json().get("ready") and http.get("/readyz"))
    assert ready.status_code == 200


def test_a_corrupt_document_is_a_500_without_a_traceback(
    http: httpx.Client, rds: redis.Redis, settings: Settings
) -> None:
    rds.set(settings.keys().document("corrupt"), b"{not json")
    response = http.get("/api/profile/corrupt/status")
    assert response.status_code == 500
    assert response.json() == {"success": False, "detail": "Failed to check profile status"}


def test_unreachable_redis_is_a_503_with_retry_after(settings: Settings) -> None:
    dead = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0", "redis_timeout_s": 0.5})
    server = ApiThread(dead).start()
    try:
        with server.client() as client:
            response = client.get("/api/profile/anyone/status")
            assert client.get("/readyz").status_code == 503
    finally:
        server.stop()
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["success"] is False and body["detail"]
    data = body["data"]
    assert (data["status"], data["retry_recommended"], data["next_action"]) == ("ERROR", True, "retry_status_check")
    assert data["retry_delay"] == "30 seconds" and data["error_type"] and data["message"]


def test_stopping_the_projector_is_prompt(settings: Settings) -> None:
    thread = ProjectorThread(settings).start()
    time.sleep(0.5)
    started = time.monotonic()
    thread.stop(timeout=5)
    assert time.monotonic() - started < 5


def test_a_poll_the_process_cache_holds_reads_nothing_from_redis(
    http: httpx.Client, db: psycopg.Connection, settings: Settings
) -> None:
    """Done, waiting and unknown names: once read, polled again with no Redis read at all."""
    add_profile(db, "cached_done")
    add_job(db, "cached_waiting", priority="MEDIUM")
    for name in ("cached_done", "cached_waiting", "cached_nobody"):
        eventually(lambda name=name: status(http, name)["status"] in ("exists", "PENDING", "NOT_FOUND"))
        assert_answers(http, db, name)
    rds = redis.Redis.from_url(settings.redis_url)

    def reads() -> int:
        stats = rds.info("commandstats")
        return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("evalsha", "get", "evalsha_ro"))

    def sixty_polls_read_almost_nothing() -> bool:
        before = reads()
        for _ in range(20):
            for name in ("cached_done", "cached_waiting", "cached_nobody"):
                status(http, name)
        # Other tests' servers share this Redis: a few of their reads may land meanwhile, not 60
        # of ours (a read is 3 calls: the script, and the GETs it makes).
        return reads() - before < 30

    # The cache serves once the change counters were first checked, a fraction of a second after start.
    eventually(sixty_polls_read_almost_nothing, timeout=5.0)
