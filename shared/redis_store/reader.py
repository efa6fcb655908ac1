"""Reading a username's status straight from Redis, for the API and for other services.

    from redis.asyncio import Redis, RedisCluster
    from shared.redis_store.reader import StatusReader

    async with StatusReader(Redis.from_url("redis://...")) as reader:
        data = await reader.status("mike_1")   # the API's `data`, or None on a miss

On a Redis Cluster pass a `redis.asyncio.RedisCluster` and the deployment's
keys: `StatusReader(cluster, Keys("status:", shards=16))` (the projector's
`PROFILE_STATUS_QUEUE_SHARDS`, 16 by default on a cluster).

On a miss (None) do not conclude NOT_FOUND: the document may have expired or
not been projected yet. Ask the API (which reads through to Postgres), or retry
shortly. See README "Redis documents".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisError, ResponseError

from shared.model.document import StatusDocument
from shared.model.estimates import Estimates
from shared.model.render import render
from shared.model.rules import QueuePosition
from shared.model.usernames import normalize_username
from shared.redis_store.connect import within
from shared.redis_store.keys import DEFAULT_PREFIX, Keys
from shared.redis_store.pipelined import PipelinedConnection
from shared.redis_store.store import READ_SOURCE, RawStatus, StatusStore
from shared.redis_store.tick_batch import Done, TaskSender, TickBatcher

ESTIMATES_REFRESH_S = 5.0


# Documents kept decoded per username: a poll whose document did not change is not parsed again.
DECODED_KEPT = 20_000


@dataclass(frozen=True, slots=True)
class Reading:
    """One read: the document (None on a miss) and, for an active job, its position.

    `needs_position` is True when the job is active but Redis cannot rank it
    right now (the projection is being rebuilt): count it elsewhere. `seq` is
    the change counter the read reflects (single Redis; None on a cluster).
    """

    document: StatusDocument | None
    position: QueuePosition | None
    needs_position: bool
    seq: int | None = None


class StatusReader:
    """Reads and renders status documents; the API's hit path is this class.

    On a single Redis, the reads asked for in one event-loop tick go to Redis as
    one script call (`TickBatcher`), over a connection of its own that hands the
    reply to the waiting polls as soon as it is read
    (`shared.redis_store.pipelined`: close the reader when done, or use it as
    `async with`); a document whose bytes did not change since its username's
    last read is not decoded again (the same object is returned).
    """

    def __init__(self, redis: Redis | RedisCluster, keys: Keys | None = None, deadline_s: float | None = None) -> None:
        """`deadline_s` bounds each read as a whole (see `shared.redis_store.connect.within`)."""
        self.store = StatusStore(redis, keys)
        self.deadline_s = deadline_s
        self._estimates = Estimates()
        self._estimates_read = float("-inf")
        self._refreshing: asyncio.Future[None] | None = None
        self._decoded: dict[str, tuple[bytes, StatusDocument]] = {}
        self._connection: PipelinedConnection | None = None
        self._tasks: TaskSender[str, Reading | ValueError] | None = None
        self._batch: TickBatcher[str, Reading | ValueError] | None = None
        if not self.store.clustered:
            assert isinstance(redis, Redis)
            self._connection = PipelinedConnection.of(redis, deadline_s)
            if self._connection is None:  # a client this module cannot connect alike (a test double, a credential provider)
                self._tasks = TaskSender(self._read_many)
            self._batch = TickBatcher(self._tasks or self._send_many)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the reader's own connection (the client it was given stays open)."""
        if self._refreshing is not None:
            self._refreshing.cancel()
            await asyncio.gather(self._refreshing, return_exceptions=True)
        if self._connection is not None:
            await self._connection.aclose()
        if self._tasks is not None:
            await self._tasks.aclose()

    async def read(self, username: str) -> Reading:
        """The stored document of a normalized username, with its queue position (one round trip; two on a cluster)."""
        if self._batch is not None:
            reading = await self._batch.get(username)
            if isinstance(reading, ValueError):
                raise reading
            return reading
        raw = await within(self.deadline_s, self.store.read(username), abandon=self.store.clustered)
        return self._reading(username, raw)

    async def _read_many(self, usernames: Sequence[str]) -> list[Reading | ValueError]:
        raws = await within(self.deadline_s, self.store.read_many(usernames), abandon=self.store.clustered)
        return [self._reading_or_error(name, raw) for name, raw in zip(usernames, raws, strict=True)]

    def _send_many(self, usernames: Sequence[str], done: Done[Reading | ValueError]) -> None:
        assert self._connection is not None

        def answered(reply: object) -> None:
            if isinstance(reply, RedisError):
                done(reply)
                return
            try:
                raws = self.store.parse_read(reply)  # type: ignore[arg-type]
            except (TypeError, ValueError) as exc:
                done(ResponseError(f"unexpected reply to the read script: {exc}"))
                return
            # A reply of the wrong length fails the batch in `done`, not here.
            done([self._reading_or_error(name, raw) for name, raw in zip(usernames, raws, strict=False)])

        self._connection.send_script(self.store.read_command(usernames), READ_SOURCE, answered)

    def _reading_or_error(self, username: str, raw: RawStatus) -> Reading | ValueError:
        # A document that does not decode fails its own poll, not the others read with it.
        try:
            return self._reading(username, raw)
        except ValueError as exc:
            return exc

    def _reading(self, username: str, raw: RawStatus) -> Reading:
        if raw.document is None:
            return Reading(None, None, False, raw.seq)
        doc = self._decode(username, raw.document)
        if doc.queue is None or doc.queue.queue_member is None:
            return Reading(doc, None, False, raw.seq)
        if raw.complete and raw.rank is not None:
            return Reading(doc, QueuePosition(ahead=int(raw.rank), total=raw.queue_size), False, raw.seq)
        return Reading(doc, None, True, raw.seq)

    def _decode(self, username: str, data: bytes) -> StatusDocument:
        held = self._decoded.get(username)
        if held is not None and held[0] == data:
            return held[1]
        doc = StatusDocument.model_validate_json(data)
        if held is None and len(self._decoded) >= DECODED_KEPT:
            self._decoded.pop(next(iter(self._decoded)))  # the oldest insertion
        self._decoded[username] = (data, doc)
        return doc

    async def estimates(self) -> Estimates:
        """The projector's measured averages, re-read at most every few seconds (one read for
        every poll that finds them due: the others wait for it)."""
        if time.monotonic() - self._estimates_read >= ESTIMATES_REFRESH_S:
            if self._refreshing is None:
                # A task of its own: a poll that goes away does not end the read the others wait for.
                self._refreshing = asyncio.ensure_future(self._refresh_estimates())
            await asyncio.shield(self._refreshing)
        return self._estimates

    async def _refresh_estimates(self) -> None:
        try:
            fresh = Estimates.from_hash(await self._stored_estimates())
        finally:
            self._refreshing = None
        # The same object while the figures stand: answers rendered with it stay reusable.
        if fresh != self._estimates:
            self._estimates = fresh
        self._estimates_read = time.monotonic()

    async def _stored_estimates(self) -> dict[bytes, bytes]:
        key = self.store.keys.estimates
        if self._connection is None:
            return await within(self.deadline_s, self.store.redis.hgetall(key), abandon=self.store.clustered)
        # The reads' connection: a poll's one client is the one that just read its document.
        flat = await self._connection.call("HGETALL", key)
        return dict(zip(flat[::2], flat[1::2], strict=True))

    async def status(self, username: str, now: datetime | None = None) -> dict[str, Any] | None:
        """The API's `data` for `username` (any form the API accepts), or None on a miss.

        Raises `shared.model.usernames.InvalidUsername` for a name the API would reject.
        """
        reading = await self.read(normalize_username(username))
        if reading.document is None:
            return None
        return render(reading.document, now or datetime.now(UTC), reading.position, await self.estimates())


async def read_status(
    redis: Redis | RedisCluster, username: str, *, prefix: str = DEFAULT_PREFIX, shards: int = 1
) -> dict[str, Any] | None:
    """One-shot form of `StatusReader.status`."""
    async with StatusReader(redis, Keys(prefix, shards)) as reader:
        return await reader.status(username)
