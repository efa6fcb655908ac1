"""Anonymous clients learn nothing about other people or our servers, and a lost store is a 503 everywhere.

Contract section 4: the list of recently changed usernames is off unless the
deployment enables it; health and error bodies name no host, process id, DSN
or driver message. Every endpoint that reads Redis answers 503 with
`Retry-After` when Redis, single or cluster, cannot be reached (redis-py's
cluster client raises exceptions that are no `RedisError`).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import httpx
import orjson
import psycopg
import pytest

from demo.embedded import EmbeddedRedis, free_port
from shared.settings import Settings
from tests.integration.rows import add_job
from tests.integration.stack import ApiThread, ProjectorThread, eventually

STORE_ROUTES = (
    "/api/profile/someone/status",
    "/api/profile/someone/status/stream",
    "/api/queue/status",
    "/api/queue/recent",
    "/readyz",
)
# What a driver's message would carry: the address, the scheme, its own words.
LEAKS = ("127.0.0.1", "localhost", "redis://", "postgresql://", "Error ", "errno", "refused", "Cluster", "Traceback")


def assert_says_nothing_of_us(text: str, *also: str) -> None:
    """No host, port, DSN, pid or driver text in a body."""
    for leak in (*LEAKS, socket.gethostname(), *also):
        assert leak not in text, f"{leak!r} revealed in {text!r}"


def test_recent_usernames_are_off_unless_enabled(settings: Settings, db: psycopg.Connection) -> None:
    add_job(db, "private_person")
    projector = ProjectorThread(settings).start()
    closed = ApiThread(settings).start()
    opened = ApiThread(settings.model_copy(update={"public_recent_usernames": True})).start()
    try:
        with closed.client() as http:
            eventually(lambda: http.get("/api/profile/private_person/status").json()["data"]["status"] == "PENDING")
            response = http.get("/api/queue/recent")
            assert response.status_code == 404
            assert "private_person" not in response.text
            assert "/api/queue/recent" in http.get("/openapi.json").text  # documented, with its 404
        with opened.client() as http:
            names = eventually(lambda: http.get("/api/queue/recent?limit=5").json()["data"]["usernames"])
            assert names == ["private_person"]
    finally:
        opened.stop()
        closed.stop()
        projector.stop()


def test_readiness_names_no_host_or_pid(settings: Settings, projector: ProjectorThread, api: ApiThread) -> None:
    with api.client() as http:
        ready = eventually(lambda: http.get("/readyz").json() if http.get("/readyz").status_code == 200 else None)
    assert set(ready["projector"]) == {"backlog", "backlog_age_s", "rebuilding"}
    assert_says_nothing_of_us(orjson.dumps(ready).decode(), f'"pid":{os.getpid()}')


@pytest.mark.parametrize("cluster", [False, True], ids=["single", "cluster"])
def test_every_store_read_is_503_when_redis_is_unreachable(settings: Settings, cluster: bool) -> None:
    port = free_port()  # nothing listens there
    gone = settings.model_copy(
        update={"redis_url": f"redis://127.0.0.1:{port}/0", "redis_cluster": cluster, "public_recent_usernames": True}
    )
    api = ApiThread(gone).start()
    try:
        with api.client() as http:
            for route in STORE_ROUTES:
                response = http.get(route)
                assert response.status_code == 503, (route, response.status_code, response.text)
                assert response.headers["retry-after"], route
                assert response.headers["cache-control"] == "no-store", route
                assert_says_nothing_of_us(response.text, str(port))
            assert http.get("/healthz").status_code == 200
    finally:
        api.stop()


@pytest.fixture
def own_redis() -> Iterator[EmbeddedRedis]:
    """A Redis of this test's own, which it may stop."""
    server = EmbeddedRedis(port=free_port())
    server.start()
    yield server
    server.stop()


def test_a_stream_that_loses_redis_ends_with_our_words(
    settings: Settings, own_redis: EmbeddedRedis, db: psycopg.Connection
) -> None:
    add_job(db, "streamed", status="PENDING")
    port = own_redis.port
    api = ApiThread(settings.model_copy(update={"redis_url": own_redis.url})).start()
    try:
        with httpx.Client(base_url=api.base_url, timeout=30) as http, http.stream(
            "GET", "/api/profile/streamed/status/stream"
        ) as stream:
            assert stream.status_code == 200
            lines = stream.iter_lines()
            assert next(line for line in lines if line.startswith("event:")) == "event: status"
            own_redis.stop()
            # An active job is re-read within seconds; that read finds no Redis.
            event = next(line for line in lines if line.startswith("event:") and line != "event: status")
            data = next(line for line in lines if line.startswith("data:"))
        assert event == "event: status_error"  # never EventSource's own `error`
        body = orjson.loads(data.removeprefix("data:"))
        assert body["data"]["error_type"] == "redis_unavailable"
        assert_says_nothing_of_us(data, str(port))
    finally:
        api.stop()
