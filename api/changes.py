"""One Redis subscription per API process, fanned out to every stream that follows a username.

The projector publishes `"{username} {version} {queue moved: 1|0}"` on the
changes channel for each document it changes, and a beat every second. Streams register a queue per
username; a message wakes them, and they re-read the document (the message is
only a hint). The same messages keep the process's `LocalCache` exact. When the
subscription breaks, every stream is woken and the cache emptied, since
messages may have been missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Iterator

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from api.cache import LocalCache
from shared.errors import one_line
from shared.keys import BEAT

log = logging.getLogger(__name__)
RESUBSCRIBE_DELAY_S = 1.0


class ChangeHub:
    """Routes change messages to the streams that follow each username."""

    def __init__(self, redis: Redis | RedisCluster, channel: str, cache: LocalCache | None = None) -> None:
        self.redis = redis
        self.channel = channel
        self.cache = cache
        self._followers: dict[str, set[asyncio.Queue[None]]] = defaultdict(set)
        self.streams = 0

    @contextlib.contextmanager
    def follow(self, username: str) -> Iterator[asyncio.Queue[None]]:
        """A wake-up queue for `username` while the `with` block runs; removed on exit."""
        wake: asyncio.Queue[None] = asyncio.Queue(maxsize=1)
        self._followers[username].add(wake)
        self.streams += 1
        try:
            yield wake
        finally:
            self.streams -= 1
            followers = self._followers.get(username)
            if followers is not None:
                followers.discard(wake)
                if not followers:
                    del self._followers[username]

    def _wake(self, queues: set[asyncio.Queue[None]]) -> None:
        for wake in queues:
            if wake.empty():  # one pending wake-up is enough: the stream re-reads everything
                wake.put_nowait(None)

    async def run(self) -> None:
        """Keep the subscription alive for the life of the process."""
        while True:
            pubsub = None
            try:
                # A cluster client learns the slot map here; subscribing before that fails.
                await self.redis.initialize()
                pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
                await pubsub.subscribe(self.channel)
                if self.cache:
                    self.cache.reset(connected=True)
                self._wake({q for qs in self._followers.values() for q in qs})
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    fields = message["data"].split(b" ")
                    username = fields[0].decode()
                    if self.cache:
                        # Without the third field (an older projector), assume the queue moved.
                        moved = fields[2:3] != [b"0"]
                        self.cache.heard(None if username == BEAT else username, moved)
                    if username == BEAT:
                        continue
                    followers = self._followers.get(username)
                    if followers:
                        self._wake(followers)
            except (RedisError, RedisClusterException, OSError) as exc:
                if self.cache:
                    self.cache.reset(connected=False)
                log.warning("change subscription lost: %s", one_line(exc), extra={"event": "subscription_lost"})
                await asyncio.sleep(RESUBSCRIBE_DELAY_S)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(RedisError, RedisClusterException, OSError):
                        await pubsub.aclose()
