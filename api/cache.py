"""A per-process cache of stored documents, kept exact by the projector's change messages.

Every document the projector (or a miss) writes is announced on the changes
channel in the same Lua script, so this process hears of a change a few
milliseconds after Redis has it. An entry is dropped when its username changes;
entries of active jobs are also dropped when anything changes, since any change
may move their queue position (the `epoch` counts changes). While the
subscription is down, or the channel has been silent longer than the
projector's beat allows, the cache is off and every poll goes to Redis.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from shared.reader import Reading

MAX_ENTRIES = 100_000
# The active projector publishes a beat every second; two missed beats and we stop trusting silence.
MAX_SILENCE_S = 2.5


@dataclass(slots=True)
class _Entry:
    reading: Reading
    epoch: int


class LocalCache:
    """Readings by username, valid while change messages keep flowing."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self.epoch = 0
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

    def put(self, username: str, reading: Reading, epoch: int) -> None:
        """Remember a reading taken when the epoch was `epoch` (dropped if anything changed since)."""
        if epoch != self.epoch or not self.live or reading.needs_position or reading.document is None:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.pop(next(iter(self._entries)))  # the oldest insertion
        self._entries[username] = _Entry(reading, epoch)

    def heard(self, username: str | None) -> None:
        """A message arrived: a username changed (None: only the projector's beat)."""
        self._heard = time.monotonic()
        if username is not None:
            self.epoch += 1
            self._entries.pop(username, None)

    def reset(self, connected: bool) -> None:
        """The subscription (re)started or broke: forget everything."""
        self.connected = connected
        self.epoch += 1
        self._entries.clear()
