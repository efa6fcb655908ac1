"""One Redis subscription per API process, fanned out to every stream that follows a username.

Every write is announced on the changes channel (`shared.redis_store.records`).
A stream registers one `Wake` for the usernames it follows (one, or up to 50 for
the multiplexed stream); a message notes its username there and wakes the
stream, which re-reads that document (the message is only a hint). The same
messages keep the process's `LocalCache` exact, and the shards' change
counters, read a few times a second, tell it when a message was lost. When the
subscription (re)starts, every stream is woken for all its usernames and the
cache emptied, since messages may have been missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator

from api import metrics
from api.cache import CHECK_EVERY_S, LocalCache
from shared.errors import one_line, raise_if_cancelled
from shared.redis_store import reports
from shared.redis_store.connect import STORE_ERRORS
from shared.redis_store.records import parse_changes
from shared.redis_store.store import StatusStore

log = logging.getLogger(__name__)
RESUBSCRIBE_DELAY_S = 1.0


class Wake:
    """One stream's wake-up: which of its usernames changed since it last looked."""

    def __init__(self, usernames: frozenset[str]) -> None:
        self.usernames = usernames
        self._changed: set[str] = set()
        self._event = asyncio.Event()

    def note(self, username: str) -> None:
        """A change message for `username` (one of ours) arrived."""
        self._changed.add(username)
        self._event.set()

    def note_all(self) -> None:
        """Messages may have been missed: everything may have changed."""
        self._changed.update(self.usernames)
        self._event.set()

    def take(self) -> set[str]:
        """The usernames noted since the last call, forgotten as they are returned."""
        changed, self._changed = self._changed, set()
        self._event.clear()
        return changed

    async def wait(self) -> None:
        """Until something is noted (returns at once if something already is)."""
        await self._event.wait()


class ChangeHub:
    """Routes change messages to the streams that follow each username, and keeps the cache exact."""

    def __init__(self, store: StatusStore, cache: LocalCache | None = None) -> None:
        self.store = store
        self.cache = cache
        self._followers: dict[str, set[Wake]] = defaultdict(set)

    @contextlib.contextmanager
    def follow(self, usernames: Iterable[str]) -> Iterator[Wake]:
        """A `Wake` for `usernames` while the `with` block runs; removed on exit."""
        wake = Wake(frozenset(usernames))
        for username in wake.usernames:
            self._followers[username].add(wake)
        try:
            yield wake
        finally:
            for username in wake.usernames:
                followers = self._followers.get(username)
                if followers is not None:
                    followers.discard(wake)
                    if not followers:
                        del self._followers[username]

    async def run(self) -> None:
        """Keep the subscription (and, with a cache, the counter checks) alive for the life of the process."""
        checks = asyncio.create_task(self._check_counters()) if self.cache else None
        try:
            await self._subscribe_forever()
        finally:
            if checks is not None:
                checks.cancel()
                await asyncio.gather(checks, return_exceptions=True)

    async def _subscribe_forever(self) -> None:
        while True:
            pubsub = None
            try:
                pubsub = await reports.subscribe_changes(self.store)
                if self.cache:
                    self.cache.reset(connected=True)
                for wake in {w for ws in self._followers.values() for w in ws}:
                    wake.note_all()
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    raise_if_cancelled()
                    if message is not None:
                        self._deliver(message["data"])
            except STORE_ERRORS as exc:
                raise_if_cancelled()
                if self.cache:
                    self.cache.reset(connected=False)
                log.warning("change subscription lost: %s", one_line(exc), extra={"event": "subscription_lost"})
                await asyncio.sleep(RESUBSCRIBE_DELAY_S)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(*STORE_ERRORS):
                        await pubsub.aclose()

    def _deliver(self, data: bytes) -> None:
        try:
            changes = parse_changes(data)
        except ValueError:
            # Not ours (another writer on the channel, an older layout): say so once per message, go on.
            metrics.BAD_MESSAGES.inc()
            log.warning("unreadable change message ignored: %r", data[:200], extra={"event": "bad_change_message"})
            return
        for change in changes:
            if self.cache:
                self.cache.heard(change)
            for wake in self._followers.get(change.username, ()):
                wake.note(change.username)

    async def _check_counters(self) -> None:
        """Read every shard's change counter a few times a second: a message never heard empties the cache."""
        assert self.cache is not None
        while True:
            await asyncio.sleep(CHECK_EVERY_S)
            if not self.cache.connected:
                continue
            mark = self.cache.mark()
            try:
                counters = await self.store.seqs()
            except STORE_ERRORS:
                counters = None
            raise_if_cancelled()
            if counters is None:
                self.cache.suspend()
                continue
            if self.cache.check(counters, mark):
                metrics.CACHE_RESETS.inc()
                log.info("a change message was lost or Redis went back: cache emptied", extra={"event": "cache_reset"})

