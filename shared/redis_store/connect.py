"""Redis clients (a single server or a cluster), and waiting for one to answer at start."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

from redis.asyncio import Redis, RedisCluster
from redis.cluster import LoadBalancingStrategy
from redis.exceptions import RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.errors import RedisUnavailable, one_line, redacted

T = TypeVar("T")

RETRY_EVERY_S = 0.25
# No CLIENT SETINFO on connect: Redis 7.0 does not know it, and our ACL users
# (deploy/redis/users.acl) are granted only what we run. redis-py 8 spells it
# driver_info=None; older versions lib_name/lib_version=None.
_NO_CLIENT_SETINFO: dict[str, None] = (
    {"driver_info": None}
    if "driver_info" in inspect.signature(Redis.__init__).parameters
    else {"lib_name": None, "lib_version": None}
)
# Every way a call fails because the store cannot answer. redis-py's cluster client
# raises RedisClusterException, which is no RedisError, when no node can be reached.
STORE_ERRORS: tuple[type[Exception], ...] = (RedisError, RedisClusterException, OSError)


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
            **_NO_CLIENT_SETINFO,
        )
    return Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        health_check_interval=30,
        client_name=name,
        **_NO_CLIENT_SETINFO,
    )


async def wait_for_redis(redis: Redis | RedisCluster, url: str, timeout_s: float) -> None:
    """Return once Redis answers PING; raise `RedisUnavailable` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            await redis.ping()
            return
        except STORE_ERRORS as exc:
            if time.monotonic() + RETRY_EVERY_S >= deadline:
                raise RedisUnavailable(
                    f"cannot reach Redis at {redacted(url)} within {timeout_s:g} s: {one_line(exc)}"
                ) from exc
            await asyncio.sleep(RETRY_EVERY_S)


async def within(seconds: float | None, call: Awaitable[T], *, abandon: bool = True) -> T:
    """`call`'s result, or `redis.exceptions.TimeoutError` after `seconds` (None: no bound).

    A deadline over the whole call, not only each socket read: a cluster client
    that finds no node answering retries node after node. With `abandon` the call
    is not cancelled when the time is up but left to end on its own socket
    timeouts: redis-py's cluster client, cancelled while it connects to a node
    that accepted the socket but does not answer (a frozen node), leaves that
    socket open. Without it (a single Redis, whose client closes a cancelled
    connection) the call runs in the caller's task and is cancelled: no task of
    its own, so fewer turns of a busy event loop before the answer is back.
    """
    if seconds is None:
        return await call
    if not abandon:
        try:
            async with asyncio.timeout(seconds):
                return await call
        except TimeoutError as timed_out:
            raise RedisTimeoutError(f"Redis did not answer within {seconds:g} s") from timed_out
    task = asyncio.ensure_future(call)
    try:
        return await asyncio.wait_for(asyncio.shield(task), seconds)
    except TimeoutError as timed_out:
        task.add_done_callback(_retrieved)
        raise RedisTimeoutError(f"Redis did not answer within {seconds:g} s") from timed_out


def _retrieved(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # an abandoned call's failure is no news
