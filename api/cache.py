"""A per-process cache of stored documents, kept exact by the projector's change messages.

Every document the projector (or a miss) writes is announced on the changes
channel once Redis has it, so this process hears of a change a few
milliseconds later. An entry is dropped when its username changes;
entries of active jobs are also dropped when the active queue changes, since
that may move their position (the `epoch` counts queue changes, `changes` all). While the
subscription is down, or the channel has been silent longer than the
projector's beat allows, the cache is off and every poll goes to Redis.

Entries also keep the response last rendered from them, for as long as the
clock cannot change it (`shared.render.unchanged_until`; for a running job, all
but its duration: `duration_only_until`): a repeated poll then renders nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.estimates import Estimates
from shared.reader import Reading

MAX_ENTRIES = 100_000
# The active projector publishes a beat every second; two missed beats and we stop trusting silence.
MAX_SILENCE_S = 2.5


@dataclass(frozen=True, slots=True)
class Token:
    """The cache's counters when a read started: a reading is stored only if nothing changed since."""

    changes: int
    epoch: int


@dataclass(slots=True)
class _Entry:
    reading: Reading
    epoch: int
    # The reading rendered into a response, reusable until `until` with the same estimates.
    answer: Any = None
    until: datetime | None = None
    estimates: Estimates | None = None


class LocalCache:
    """Readings by username, valid while change messages keep flowing."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self.epoch = 0
        self.changes = 0
        self._entries: dict[str, _Entry] = {}
        self._heard = float("-inf")
        self.connected = False

    @property
    def live(self) -> bool:
        """Whether entries may be served: subscribed, and a message heard recently."""
        return self.connected and time.monotonic() - self._heard <= MAX_SILENCE_S

    def get(self, username: str) -> Reading | None:
        """The cached reading, if still exact."""
        if not self.live:
            return None
        entry = self._entries.get(username)
        if entry is None:
            return None
        if entry.reading.position is not None and entry.epoch != self.epoch:
            return None  # positions may have moved
        return entry.reading

    def answer(self, username: str, now: datetime, estimates: Estimates) -> Any:
        """The response rendered from the cached reading, if it still is what rendering now would give."""
        if not self.live:
            return None
        entry = self._entries.get(username)
        if entry is None or entry.answer is None or entry.estimates is not estimates:
            return None
        if entry.reading.position is not None and entry.epoch != self.epoch:
            return None
        return entry.answer if entry.until is not None and now < entry.until else None

    def keep_answer(
        self, username: str, reading: Reading, answer: Any, until: datetime | None, estimates: Estimates
    ) -> None:
        """Remember `answer`, rendered from `reading` (if that is still the cached one) with `estimates`."""
        entry = self._entries.get(username)
        if entry is not None and entry.reading is reading and until is not None:
            entry.answer, entry.until, entry.estimates = answer, until, estimates

    def token(self) -> Token:
        """Take before reading from Redis; hand to `put` with the reading."""
        return Token(self.changes, self.epoch)

    def put(self, username: str, reading: Reading, token: Token) -> None:
        """Remember a reading, unless any change was heard since its `token` was taken."""
        if token.changes != self.changes or not self.live or reading.needs_position or reading.document is None:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.pop(next(iter(self._entries)))  # the oldest insertion
        self._entries[username] = _Entry(reading, token.epoch)

    def heard(self, username: str | None, queue_moved: bool = True) -> None:
        """A message arrived: a username changed (None: only the projector's beat)."""
        self._heard = time.monotonic()
        if username is not None:
            self.changes += 1
            if queue_moved:
                self.epoch += 1
            self._entries.pop(username, None)

    def reset(self, connected: bool) -> None:
        """The subscription (re)started or broke: forget everything."""
        self.connected = connected
        self.changes += 1
        self.epoch += 1
        self._entries.clear()
