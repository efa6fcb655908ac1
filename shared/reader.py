"""Reading a username's status straight from Redis, for the API and for other services.

    from redis.asyncio import Redis, RedisCluster
    from shared.reader import StatusReader

    reader = StatusReader(Redis.from_url("redis://..."))
    data = await reader.status("mike_1")   # the API's `data`, or None on a miss

On a Redis Cluster pass a `redis.asyncio.RedisCluster` and the deployment's
keys: `StatusReader(cluster, Keys("status:", shards=16))` (the projector's
`PROFILE_STATUS_QUEUE_SHARDS`, 16 by default on a cluster).

On a miss (None) do not conclude NOT_FOUND: the document may have expired or
not been projected yet. Ask the API (which reads through to Postgres), or retry
shortly. See README "Redis documents".
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis, RedisCluster

from shared.document import StatusDocument
from shared.estimates import Estimates
from shared.keys import DEFAULT_PREFIX, Keys
from shared.render import render
from shared.rules import QueuePosition
from shared.store import StatusStore
from shared.usernames import normalize_username

ESTIMATES_REFRESH_S = 5.0


@dataclass(frozen=True, slots=True)
class Reading:
    """One read: the document (None on a miss) and, for an active job, its position.

    `needs_position` is True when the job is active but Redis cannot rank it
    right now (the projection is being rebuilt): count it elsewhere.
    """

    document: StatusDocument | None
    position: QueuePosition | None
    needs_position: bool


class StatusReader:
    """Reads and renders status documents; the API's hit path is this class."""

    def __init__(self, redis: Redis | RedisCluster, keys: Keys | None = None) -> None:
        self.store = StatusStore(redis, keys)
        self._estimates = Estimates()
        self._estimates_read = float("-inf")

    async def read(self, username: str) -> Reading:
        """The stored document of a normalized username, with its queue position (one round trip; two on a cluster)."""
        raw = await self.store.read(username)
        if raw.document is None:
            return Reading(None, None, False)
        doc = StatusDocument.model_validate_json(raw.document)
        if doc.queue is None or doc.queue.queue_member is None:
            return Reading(doc, None, False)
        if raw.complete and raw.rank is not None:
            return Reading(doc, QueuePosition(ahead=int(raw.rank), total=raw.queue_size), False)
        return Reading(doc, None, True)

    async def estimates(self) -> Estimates:
        """The projector's measured averages, re-read at most every few seconds."""
        if time.monotonic() - self._estimates_read >= ESTIMATES_REFRESH_S:
            fresh = Estimates.from_hash(await self.store.redis.hgetall(self.store.keys.estimates))
            # The same object while the figures stand: answers rendered with it stay reusable.
            if fresh != self._estimates:
                self._estimates = fresh
            self._estimates_read = time.monotonic()
        return self._estimates

    async def status(self, username: str, now: datetime | None = None) -> dict[str, Any] | None:
        """The API's `data` for `username` (any form the API accepts), or None on a miss.

        Raises `shared.usernames.InvalidUsername` for a name the API would reject.
        """
        reading = await self.read(normalize_username(username))
        if reading.document is None:
            return None
        return render(reading.document, now or datetime.now(UTC), reading.position, await self.estimates())


async def read_status(
    redis: Redis | RedisCluster, username: str, *, prefix: str = DEFAULT_PREFIX, shards: int = 1
) -> dict[str, Any] | None:
    """One-shot form of `StatusReader.status`."""
    return await StatusReader(redis, Keys(prefix, shards)).status(username)
