"""Polls served from cluster replicas (`PROFILE_STATUS_REDIS_READ_FROM_REPLICAS`): still right, still fresh."""

from __future__ import annotations

import httpx
import psycopg
import pytest
from redis.cluster import RedisCluster

from shared.settings import Settings
from tests.integration.rows import add_job
from tests.integration.stack import eventually
from tests.integration.test_status_api import (  # noqa: F401
    test_a_committed_change_is_visible_within_a_second,
    test_every_state_answers_what_postgres_says,
    test_positions_shift_as_jobs_complete,
)

pytestmark = pytest.mark.usefixtures("projector")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The cluster settings of conftest.py, with reads spread over replicas."""
    return settings.model_copy(update={"redis_read_from_replicas": True})

def _replica_reads(rds: RedisCluster) -> int:
    """GETs and EVALSHA_ROs (ranks) the cluster's replicas have served so far."""
    total = 0
    for node in rds.get_replicas():
        stats = rds.info("commandstats", target_nodes=node)
        total += sum(stats.get(f"cmdstat_{c}", {}).get("calls", 0) for c in ("get", "evalsha_ro"))
    return total


def test_polls_are_served_by_replicas(http: httpx.Client, db: psycopg.Connection, rds: RedisCluster) -> None:
    add_job(db, "replica_reader", priority="LOW")
    add_job(db, "before_it", priority="HIGH")
    eventually(lambda: http.get("/api/profile/replica_reader/status").json()["data"]["queue_position"] == 2)
    before = _replica_reads(rds)
    for _ in range(20):
        assert http.get("/api/profile/replica_reader/status").json()["data"]["queue_position"] == 2
    assert _replica_reads(rds) > before
