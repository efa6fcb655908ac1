"""The integration fixtures, pointed at a local Redis Cluster (3 primaries, 3 replicas) instead of one Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from redis.cluster import RedisCluster

from shared.settings import Settings
from tests.servers.cluster import cluster_client


@pytest.fixture
def key_prefix(redis_cluster_url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted from every primary afterwards."""
    prefix = f"t{uuid.uuid4().hex[:10]}:"
    yield prefix
    with cluster_client(redis_cluster_url) as client:
        for key in list(client.scan_iter(match=f"{prefix}*", count=1000)):
            client.delete(key)  # one by one: keys of different slots cannot share a DEL


@pytest.fixture
def settings(settings: Settings, redis_cluster_url: str) -> Settings:
    """The integration settings (this test's database and prefix), with REDIS_URL naming the cluster."""
    return settings.model_copy(update={"redis_url": redis_cluster_url, "redis_cluster": True})


@pytest.fixture
def rds(redis_cluster_url: str) -> Iterator[RedisCluster]:
    """A cluster client, for looking at what the projector wrote."""
    with cluster_client(redis_cluster_url) as client:
        yield client
