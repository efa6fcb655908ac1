"""Cheap polling and push: ETags and 304s, cache headers, SSE, the queue overview, metrics, OpenAPI."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
import redis
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families

from shared.redis_store.reader import StatusReader
from shared.settings import Settings
from shared.wiring import redis_from_settings
from tests.integration.rows import add_job, add_profile, expected_data
from tests.integration.sse import Listener
from tests.integration.stack import ApiThread, count_tasks, eventually

pytestmark = pytest.mark.usefixtures("projector")


def _get(http: httpx.Client, username: str, etag: str | None = None) -> httpx.Response:
    headers = {"If-None-Match": etag} if etag else {}
    return http.get(f"/api/profile/{username}/status", headers=headers)


def test_etag_round_trip_and_304(http: httpx.Client, db: psycopg.Connection) -> None:
    add_job(db, "etag_user", status="PENDING")
    eventually(lambda: _get(http, "etag_user").json()["data"]["status"] == "PENDING")
    first = _get(http, "etag_user")
    tag = first.headers["etag"]
    assert tag.startswith('W/"')
    again = _get(http, "etag_user", tag)
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == tag
    db.execute("UPDATE queue SET status = 'PROCESSING', last_attempt = now() WHERE username = 'etag_user'")
    changed = eventually(lambda: (r := _get(http, "etag_user", tag)).status_code == 200 and r)
    assert changed.headers["etag"] != tag
    assert changed.json()["data"]["status"] == "PROCESSING"


def test_a_stage_crossed_by_the_clock_alone_changes_the_etag(http: httpx.Client, db: psycopg.Connection) -> None:
    add_job(db, "clock_user", status="PROCESSING", last_attempt=datetime.now(UTC) - timedelta(seconds=58.5))
    first = eventually(lambda: (r := _get(http, "clock_user")).json()["data"]["status"] == "PROCESSING" and r)
    assert first.json()["data"]["processing_stage"] == "initializing"
    later = eventually(lambda: (r := _get(http, "clock_user", first.headers["etag"])).status_code == 200 and r, timeout=5)
    assert later.json()["data"]["processing_stage"] == "fetching_profile_data"


def test_cache_control_follows_the_state(http: httpx.Client, db: psycopg.Connection) -> None:
    add_profile(db, "cached_done")
    add_job(db, "cached_failed", status="FAILED", attempts=3)
    add_job(db, "cached_fast", status="PROCESSING", last_attempt=datetime.now(UTC))
    add_job(db, "cached_pending", status="PENDING")

    def max_age(name: str) -> int:
        r = _get(http, name)
        assert r.status_code == 200
        return int(r.headers["cache-control"].removeprefix("max-age="))

    eventually(lambda: _get(http, "cached_pending").json()["data"]["status"] == "PENDING")
    assert max_age("cached_done") == 300
    assert max_age("cached_failed") == 30
    assert max_age("cached_fast") <= 15
    assert max_age("cached_pending") <= 30
    assert max_age("cached_nobody") <= 5


def _listen(base_url: str, username: str, last_event_id: str | None = None) -> Listener:
    return Listener(base_url, f"/api/profile/{username}/status/stream", last_event_id)


def test_sse_pushes_each_committed_change_within_a_second(api: ApiThread, db: psycopg.Connection) -> None:
    add_job(db, "pushed", status="PENDING")
    with api.client() as http:
        eventually(lambda: _get(http, "pushed").json()["data"]["status"] == "PENDING")
    listener = _listen(api.base_url, "pushed")
    eventually(lambda: listener.statuses() == ["PENDING"])
    latencies = []
    for i in range(10):
        target = ("PROCESSING", "PENDING")[i % 2]
        seen = len(listener.events)
        db.execute("UPDATE queue SET status = %s, last_attempt = now() WHERE username = 'pushed'", (target,))
        committed = time.monotonic()
        eventually(lambda: len(listener.events) > seen and listener.statuses()[-1] == target, timeout=1.0, interval=0.002)
        latencies.append(listener.events[-1][0] - committed)
    print(f"\nSSE push latency from commit: median {statistics.median(latencies) * 1000:.1f} ms, worst {max(latencies) * 1000:.1f} ms")
    last_id = listener.events[-1][1]["id"]
    db.execute("UPDATE queue SET status = 'COMPLETED' WHERE username = 'pushed'")
    assert listener.ended.wait(5), "the stream must end after a terminal state"
    assert listener.error is None
    assert listener.statuses()[-1] == "COMPLETED"
    assert int(listener.events[-1][1]["id"]) > int(last_id)
    # A client resuming with an older Last-Event-ID gets the state it missed at once.
    resumed = _listen(api.base_url, "pushed", last_event_id=last_id)
    assert resumed.ended.wait(5)
    assert resumed.statuses() == ["COMPLETED"]


def test_sse_for_an_unknown_name_stays_open_until_it_is_submitted(api: ApiThread, db: psycopg.Connection) -> None:
    listener = _listen(api.base_url, "later_user")
    eventually(lambda: listener.statuses() == ["NOT_FOUND"])
    assert not listener.ended.is_set()
    add_job(db, "Later_User", status="PENDING")
    eventually(lambda: listener.statuses()[-1:] == ["PENDING"], timeout=2)
    add_profile(db, "later_user")
    assert listener.ended.wait(5)
    assert listener.statuses()[-1] == "exists"


def test_sse_rejects_bad_names_and_caps_streams(settings: Settings, db: psycopg.Connection) -> None:
    capped = ApiThread(settings.model_copy(update={"sse_max_streams": 1})).start()
    try:
        with capped.client() as http:
            assert http.get("/api/profile/a%2Fb/status/stream").status_code == 400
            first = _listen(capped.base_url, "capped_one")
            eventually(lambda: first.statuses() == ["NOT_FOUND"])
            second = http.get("/api/profile/capped_two/status/stream")
            assert second.status_code == 503 and second.headers["retry-after"]
    finally:
        capped.stop()


@pytest.fixture
def crowd_api(settings: Settings) -> Iterator[ApiThread]:
    """An API that takes many streams from one address (as behind a proxy that forwards no client address)."""
    server = ApiThread(settings.model_copy(update={"sse_max_streams_per_client": 0})).start()
    yield server
    server.stop()


def test_two_hundred_streams_come_and_go_without_leaks(
    crowd_api: ApiThread, rds: redis.Redis, db: psycopg.Connection
) -> None:
    api = crowd_api
    add_job(db, "crowd", status="PENDING")
    name = "profile-status-api-"

    def api_connections() -> int:
        return sum(1 for c in rds.client_list() if c.get("name", "").startswith(name))

    with api.client() as http:
        eventually(lambda: _get(http, "crowd").json()["data"]["status"] == "PENDING")
        # One stream first: sse-starlette starts one shutdown watcher per event loop, for good.
        with http.stream("GET", "/api/profile/crowd/status/stream") as warm_up:
            next(line for line in warm_up.iter_lines() if line.startswith("data:"))
    eventually(lambda: api_connections() >= 1)
    tasks_before, connections_before = count_tasks(api), api_connections()

    async def crowd() -> int:
        async with httpx.AsyncClient(base_url=api.base_url, timeout=30, limits=httpx.Limits(max_connections=300)) as client:
            opened: list[Any] = []
            for _ in range(200):
                stream = client.stream("GET", "/api/profile/crowd/status/stream")
                response = await stream.__aenter__()
                opened.append((stream, response))
            for _, response in opened:
                lines = response.aiter_lines()
                while not (await anext(lines)).startswith("data:"):
                    pass
            during = api_connections()
            for stream, _ in opened:
                await stream.__aexit__(None, None, None)
            return during

    during = asyncio.run(crowd())
    print(f"\nRedis connections of the API process: {connections_before} before, {during} with 200 streams")
    # One subscription for all, not one per client: a few more pooled connections while reads of
    # overlapping turns are in flight (5 against 2 seen under load), never one per stream.
    assert during <= connections_before + 10
    eventually(lambda: count_tasks(api) <= tasks_before, timeout=10)
    # The connection pool may keep a few idle connections; per-client subscriptions would be 200.
    assert api_connections() <= during


def test_queue_overview_matches_sql(http: httpx.Client, db: psycopg.Connection) -> None:
    for i, (priority, status) in enumerate(
        [("HIGH", "PENDING"), ("HIGH", "PROCESSING"), ("MEDIUM", "PENDING"), ("LOW", "PENDING"), ("URGENT", "PENDING"), ("LOW", "FAILED")]
    ):
        add_job(db, f"ov_{i}", priority=priority, status=status, last_attempt=datetime.now(UTC), timestamp=datetime.now(UTC) - timedelta(minutes=i))

    def matches() -> dict[str, Any]:
        data = http.get("/api/queue/status").json()["data"]
        rows = db.execute(
            "SELECT CASE priority WHEN 'HIGH' THEN 'HIGH' WHEN 'MEDIUM' THEN 'MEDIUM' ELSE 'LOW' END, status, count(*)"
            " FROM queue WHERE status IN ('PENDING', 'PROCESSING') GROUP BY 1, 2"
        ).fetchall()
        expected = {p: {"PENDING": 0, "PROCESSING": 0} for p in ("HIGH", "MEDIUM", "LOW")}
        for p, s, n in rows:
            expected[p][s] = n
        assert data["by_priority"] == expected
        assert data["total_active"] == sum(n for _, _, n in rows)
        return data

    data = eventually(matches)
    oldest = db.execute("SELECT EXTRACT(EPOCH FROM now() - min(timestamp)) FROM queue WHERE status = 'PENDING'").fetchone()
    assert oldest and abs(data["oldest_pending_age_seconds"] - float(oldest[0])) < 5
    assert data["projector"]["heartbeat_age_seconds"] is not None


def test_metrics_parse_and_count(http: httpx.Client, db: psycopg.Connection) -> None:
    _get(http, "metrics_user")
    _get(http, "a%2Fb")
    text = http.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    requests = families["profile_status_api_requests"]
    codes = {(s.labels["route"], s.labels["code"]) for s in requests.samples if s.name.endswith("_total")}
    assert ("get_status", "200") in codes and ("get_status", "400") in codes
    assert "profile_status_api_request_seconds" in families
    assert "profile_status_api_sse_clients" in families

    def heartbeat_age() -> float | None:
        # The projector's first beat may come after the API's first scrape (-1: none yet).
        text = http.get("/metrics").text
        families = {f.name: f for f in text_string_to_metric_families(text)}
        age = families["profile_status_api_projector_heartbeat_age_seconds"].samples[0].value
        return age if age >= 0 else None

    assert eventually(heartbeat_age) < 10


def test_openapi_is_valid_and_describes_every_route(http: httpx.Client) -> None:
    spec = http.get("/openapi.json").json()
    validate(spec)
    assert set(spec["paths"]) >= {
        "/api/profile/{username}/status",
        "/api/profile/{username}/status/stream",
        "/api/status/stream",
        "/api/queue/status",
        "/healthz",
        "/readyz",
        "/metrics",
    }
    assert "StatusDocument" in spec["components"]["schemas"]


def test_cors_when_configured(settings: Settings) -> None:
    server = ApiThread(settings.model_copy(update={"cors_origins": "https://app.example"})).start()
    try:
        with server.client() as http:
            r = http.get("/api/profile/cors_user/status", headers={"Origin": "https://app.example"})
            assert r.headers["access-control-allow-origin"] == "https://app.example"
            assert "ETag" in r.headers["access-control-expose-headers"]
    finally:
        server.stop()


def test_another_service_reads_with_the_shared_reader(
    http: httpx.Client, db: psycopg.Connection, settings: Settings, rds: redis.Redis
) -> None:
    add_job(db, "Shared_Reader", status="PENDING", priority="MEDIUM")
    add_job(db, "ahead_of_it", status="PENDING", priority="HIGH")
    eventually(lambda: _get(http, "shared_reader").json()["data"].get("queue_position") == 2)
    # The API counts positions in Postgres until the projector's first projection is complete; Redis readers wait for it.
    eventually(lambda: rds.exists(settings.keys().generation))

    async def read() -> dict[str, Any] | None:
        client = redis_from_settings(settings)
        try:
            async with StatusReader(client, settings.keys()) as reader:
                assert await reader.status("nobody_known") is None  # a miss, not NOT_FOUND
                return await reader.status("@Shared_Reader")
        finally:
            await client.aclose()

    data = asyncio.run(read())
    assert data is not None
    want = expected_data(db, "shared_reader", datetime.now(UTC))
    assert {k: v for k, v in data.items() if k != "processing_duration_seconds"} == {
        k: v for k, v in want.items() if k != "processing_duration_seconds"
    }
