"""Opening connections to PostgreSQL and Redis, with a start-up deadline and our own errors."""

from __future__ import annotations

import asyncio
import time

import psycopg
from psycopg import AsyncConnection
from redis.asyncio import Redis, RedisCluster
from redis.cluster import LoadBalancingStrategy
from redis.exceptions import RedisError

from shared.errors import PostgresUnavailable, RedisUnavailable, one_line
from shared.settings import Settings

_RETRY_EVERY_S = 0.25


def _redacted(url: str) -> str:
    """The URL without its password, for messages."""
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}" if ":" in credentials else f"{scheme}{sep}{user}@{host}"


async def connect_postgres(
    url: str, timeout_s: float, *, autocommit: bool = False, application_name: str = "profile-status"
) -> AsyncConnection:
    """Connect, retrying until `timeout_s`; raise `PostgresUnavailable` with the last reason.

    `application_name` shows in pg_stat_activity, so operators can tell our sessions apart.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        try:
            return await AsyncConnection.connect(
                url,
                autocommit=autocommit,
                connect_timeout=max(1, int(remaining)),
                application_name=application_name,
            )
        except psycopg.Error as exc:
            if time.monotonic() + _RETRY_EVERY_S >= deadline:
                raise PostgresUnavailable(
                    f"cannot reach PostgreSQL at {_redacted(url)} within {timeout_s:g} s: {one_line(exc)}"
                ) from exc
            await asyncio.sleep(_RETRY_EVERY_S)


def redis_client(
    url: str,
    timeout_s: float = 2.0,
    name: str = "profile-status",
    *,
    cluster: bool = False,
    read_from_replicas: bool = False,
) -> Redis | RedisCluster:
    """A client for `url` (redis://, rediss:// with TLS, passwords included); connects lazily.

    With `cluster`, `url` names any node of a Redis Cluster; `read_from_replicas`
    then spreads read-only commands over primaries and replicas.
    `name` shows in CLIENT LIST, so operators can tell our connections apart.
    """
    if cluster:
        return RedisCluster.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            health_check_interval=30,
            client_name=name,
            load_balancing_strategy=LoadBalancingStrategy.ROUND_ROBIN if read_from_replicas else None,
        )
    return Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        health_check_interval=30,
        client_name=name,
    )


def redis_from_settings(settings: Settings, name: str = "profile-status") -> Redis | RedisCluster:
    """The Redis client the settings describe (a single server or a cluster)."""
    return redis_client(
        settings.redis_url,
        settings.redis_timeout_s,
        name,
        cluster=settings.redis_cluster,
        read_from_replicas=settings.redis_read_from_replicas,
    )


async def wait_for_redis(redis: Redis | RedisCluster, url: str, timeout_s: float) -> None:
    """Return once Redis answers PING; raise `RedisUnavailable` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            await redis.ping()
            return
        except (RedisError, OSError) as exc:
            if time.monotonic() + _RETRY_EVERY_S >= deadline:
                raise RedisUnavailable(
                    f"cannot reach Redis at {_redacted(url)} within {timeout_s:g} s: {one_line(exc)}"
                ) from exc
            await asyncio.sleep(_RETRY_EVERY_S)
