"""The integration fixtures, pointed at a local Redis Cluster (3 primaries, 3 replicas) instead of one Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from redis.cluster import RedisCluster

from shared.settings import Settings


@pytest.fixture
def key_prefix(redis_cluster_url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted from every primary afterwards."""
    prefix = f"t{uuid.uuid4().hex[:10]}:"
    yield prefix
    client = RedisCluster.from_url(redis_cluster_url)
    try:
        for key in list(client.scan_iter(match=f"{prefix}*", count=1000)):
            client.delete(key)  # one by one: keys of different slots cannot share a DEL
    finally:
        client.close()


@pytest.fixture
def settings(database_url: str, redis_cluster_url: str, key_prefix: str) -> Settings:
    """Settings for this test's database and prefix on the cluster, with quick timings."""
    return Settings(
        database_url=database_url,
        redis_url=redis_cluster_url,
        redis_cluster=True,
        key_prefix=key_prefix,
        heartbeat_interval_s=0.2,
        safety_poll_s=1.0,
        startup_timeout_s=5.0,
    )


@pytest.fixture
def rds(redis_cluster_url: str) -> Iterator[RedisCluster]:
    """A cluster client, for looking at what the projector wrote."""
    client = RedisCluster.from_url(redis_cluster_url)
    yield client
    client.close()
