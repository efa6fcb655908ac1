"""Building the clients and stores every process needs from its settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis, RedisCluster

from shared.redis_store.connect import redis_client, wait_for_redis
from shared.redis_store.store import StatusStore
from shared.settings import Settings


def redis_from_settings(settings: Settings, name: str = "profile-status") -> Redis | RedisCluster:
    """The Redis client the settings describe (a single server or a cluster)."""
    return redis_client(
        settings.redis_url,
        settings.redis_timeout_s,
        name,
        cluster=settings.redis_cluster,
        read_from_replicas=settings.redis_read_from_replicas,
    )


@asynccontextmanager
async def open_store(settings: Settings, name: str = "profile-status") -> AsyncIterator[StatusStore]:
    """A status store on a Redis that answered within the start-up timeout."""
    redis = redis_from_settings(settings, name)
    try:
        await wait_for_redis(redis, settings.redis_url, settings.startup_timeout_s)
        yield StatusStore(redis, settings.keys(), settings.ttl_policy())
    finally:
        await redis.aclose()
