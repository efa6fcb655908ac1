"""A per-process cache of stored documents, kept exact by the change messages.

Every write (by the projector, a miss, a rebuild) is announced on the changes
channel in the same step as Redis takes it, so this process hears of a change a
few milliseconds later. An entry is dropped when its username changes.

An active job's entry holds its position, which other jobs' changes move. On a
single Redis each message lists what the queue sets took (`-entry`, `+entry`)
and each reading says which change number it reflects, so a held position is
shifted by the moves heard since (`QueueMoves`) instead of being read again: a
job picked up or put back moves nobody (its entry keeps its place in the
order), a job added or removed ahead moves it by one. A move that is not listed
(a cluster's readings, a rebuild's sweep) drops every held position (`epoch`).

A message can still be lost (a cut connection, a writer that died between the
steps of a cluster write, a Redis that rolled back). Each message carries its
shard's change number, and the hub reads every shard's counter a few times a
second (`check`): a number the counter passed but this process never heard,
or a counter that went backwards, empties the cache. So what is served from
memory is never older than Redis by more than `MAX_UNCHECKED_S`; while the
subscription is down or the counters cannot be read, the cache is off.

What was rendered from an entry is kept by `api.kept_answers`, not here.
"""

from __future__ import annotations

import itertools
import time
from bisect import bisect_right
from collections import deque
from dataclasses import dataclass, replace

from api import metrics
from shared.model.rules import QueuePosition
from shared.redis_store.reader import Reading
from shared.redis_store.records import Change

MAX_ENTRIES = 100_000
# The freshness bound of the contract: entries are served only while the counters were
# checked this recently. The hub checks them every CHECK_EVERY_S, so a lost message is
# noticed at the second check after it (the first sees its number, the second its absence).
MAX_UNCHECKED_S = 1.0
CHECK_EVERY_S = 0.4
# Listed queue moves kept to shift held positions by; an entry further behind is read again.
MOVES_KEPT = 4096
# A held position is read again rather than shifted by more moves than this at once.
MAX_REPLAY = 256
# Changes remembered to tell whether a reading taken meanwhile missed one of its own.
RECENT_CHANGES = 1024


class QueueMoves:
    """The listed queue moves heard, by change number, to shift held positions by.

    A move is the signed entries one change message line says the sets took,
    less what cancels out: an entry that left one set for the other (`...:P` →
    `...:R`) keeps its place in the order, so it moves nobody else.
    """

    def __init__(self, kept: int = MOVES_KEPT) -> None:
        self._seqs: deque[int] = deque(maxlen=kept)
        self._moves: deque[tuple[tuple[str, ...], tuple[str, ...]]] = deque(maxlen=kept)
        self.floor = 0  # moves numbered up to this may have been forgotten
        self.newest = 0  # the highest change number noted: held positions are brought up to it

    def note(self, seq: int, taken: tuple[str, ...]) -> bool:
        """A listed move under change number `seq`; False if it came out of order (it cannot be kept).

        One number is one message, and a message has a line per username its batch wrote:
        the lines of the newest message are all its moves, not a message heard twice.
        """
        if seq < self.newest:
            return False
        self.newest = seq
        removed = {t[1:] for t in taken if t[0] == "-"}
        added = {t[1:] for t in taken if t[0] == "+"}
        # The same entry out of one set and into the other: the same place in the order.
        same_place = {e[:-1] for e in removed} & {e[:-1] for e in added}
        removed = tuple(e for e in removed if e[:-1] not in same_place)
        added = tuple(e for e in added if e[:-1] not in same_place)
        if not removed and not added:
            return True
        if len(self._seqs) == self._seqs.maxlen:
            self.floor = self._seqs[0]
        self._seqs.append(seq)
        self._moves.append((removed, added))
        return True

    def shift(self, member: str, position: QueuePosition, since: int) -> QueuePosition | None:
        """`position` of `member`, read at change number `since`, moved by every move heard after it;
        None when it cannot be told (moves forgotten, too many, or a result that is no position)."""
        if since < self.floor:
            return None
        start = bisect_right(self._seqs, since)
        if start == len(self._seqs):
            return position
        if len(self._seqs) - start > MAX_REPLAY:
            return None
        ahead, total = position.ahead, position.total
        for i in range(start, len(self._seqs)):
            removed, added = self._moves[i]
            for entry in removed:
                total -= 1
                ahead -= entry < member
            for entry in added:
                total += 1
                ahead += entry < member
        if not 0 <= ahead < total:
            return None
        return QueuePosition(ahead=ahead, total=total)

    def clear(self) -> None:
        """Forget every move (the numbers start again)."""
        self._seqs.clear()
        self._moves.clear()
        self.floor = self.newest = 0


@dataclass(frozen=True, slots=True)
class Token:
    """The cache's counters when a read started: a reading is stored only if nothing changed since."""

    changes: int
    epoch: int
    moved: int


@dataclass(slots=True)
class _Entry:
    reading: Reading
    epoch: int  # the cache's epoch when read: an unlisted move since drops the position
    moved: int  # the count of moves when read: for readings without a change number, any move drops it
    seq: int  # the change number the position reflects (-1: none)


class LocalCache:
    """Readings by username, valid while change messages keep flowing."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self.epoch = 0
        self.changes = 0
        self.moved = 0
        self.moves = QueueMoves()
        # The latest changes heard (username, number), newest last: what a reading in flight may miss.
        self._recent: deque[tuple[str | None, int]] = deque(maxlen=RECENT_CHANGES)
        self._entries: dict[str, _Entry] = {}
        self.connected = False
        self._checked = float("-inf")
        # Per shard: every change number up to the first is heard; the rest are heard out of order.
        self._heard_up_to: dict[int, int] = {}
        self._heard_beyond: dict[int, set[int]] = {}
        self._counted: dict[int, int] = {}  # the counters at the last check
        self._highest: dict[int, int] = {}  # per shard, the highest number heard

    @property
    def live(self) -> bool:
        """Whether entries may be served: subscribed, and the counters checked recently."""
        return self.connected and time.monotonic() - self._checked <= MAX_UNCHECKED_S

    def get(self, username: str) -> Reading | None:
        """The cached reading, if still exact."""
        entry = self._current(username)
        return entry.reading if entry is not None else None

    def _current(self, username: str) -> _Entry | None:
        """The entry of `username`, its position brought up to the moves heard; None if it cannot be."""
        if not self.live:
            return None
        entry = self._entries.get(username)
        if entry is None:
            return None
        reading = entry.reading
        if reading.position is None:
            return entry
        if entry.seq < 0:
            return entry if entry.moved == self.moved else None
        if entry.epoch != self.epoch:
            return None
        doc = reading.document
        assert doc is not None and doc.queue is not None and doc.queue.queue_member is not None  # it has a position
        position = self.moves.shift(doc.queue.queue_member, reading.position, entry.seq)
        if position is None:
            del self._entries[username]
            return None
        entry.seq = max(entry.seq, self.moves.newest)
        if position != reading.position:
            metrics.POSITIONS_SHIFTED.inc()
            entry.reading = replace(reading, position=position)
        return entry

    def token(self) -> Token:
        """Take before reading from Redis; hand to `put` with the reading."""
        return Token(self.changes, self.epoch, self.moved)

    def put(self, username: str, reading: Reading, token: Token) -> None:
        """Remember a reading, unless a change heard since its `token` was taken may be missing from it."""
        if not self.live or reading.needs_position or reading.document is None:
            return
        if token.changes != self.changes and not self._reading_current(username, reading, token):
            return
        if len(self._entries) >= self.max_entries:
            self._entries.pop(next(iter(self._entries)))  # the oldest insertion
        seq = reading.seq if reading.seq is not None else -1
        self._entries[username] = _Entry(reading, token.epoch, token.moved, seq)

    def _reading_current(self, username: str, reading: Reading, token: Token) -> bool:
        """Whether `reading` holds every change heard since `token` that concerns it: with a change
        number, only a later change of its own username is missing from it (moves are replayed)."""
        if reading.seq is None or token.epoch != self.epoch:
            return False
        heard_since = self.changes - token.changes
        if heard_since > len(self._recent):
            return False
        return not any(
            name == username and seq > reading.seq for name, seq in itertools.islice(reversed(self._recent), heard_since)
        )

    def heard(self, change: Change) -> None:
        """A change message arrived."""
        self.changes += 1
        self._recent.append((change.username, change.seq))
        if change.queue_moved:
            self.moved += 1
            if change.taken is None or not self.moves.note(change.seq, change.taken):
                self.epoch += 1
        if change.username is not None:
            self._entries.pop(change.username, None)
        shard, seq = change.shard, change.seq
        if seq > self._highest.get(shard, 0):
            self._highest[shard] = seq
        up_to = self._heard_up_to.get(shard)
        if up_to is None or seq <= up_to:
            return  # before the first check, or already counted
        self._heard_beyond.setdefault(shard, set()).add(seq)
        self._advance(shard, up_to)

    def _advance(self, shard: int, up_to: int) -> None:
        """Every number up to `up_to` is accounted for: move past the ones heard after it."""
        beyond = self._heard_beyond.setdefault(shard, set())
        while up_to + 1 in beyond:
            up_to += 1
        self._heard_up_to[shard] = up_to
        self._heard_beyond[shard] = {n for n in beyond if n > up_to}

    def mark(self) -> dict[int, int]:
        """Take before reading the counters; hand to `check` with them: the highest numbers heard by then."""
        return dict(self._highest)

    def check(self, counters: list[int], mark: dict[int, int]) -> bool:
        """Compare the shards' change counters with what was heard; empty the cache if a message
        was lost or Redis went back in time. Returns whether it was emptied.

        Messages keep arriving while the counters are read, so a counter may be older than
        a number heard meanwhile: only a number heard before the read was asked for (`mark`),
        or the previous check's counter, proves the counter went backwards.
        """
        lost = False
        for shard, counter in enumerate(counters):
            up_to = self._heard_up_to.get(shard)
            if up_to is None:
                # The first check: numbers from here on are tracked (any heard already count).
                self._advance(shard, max(counter, self._highest.get(shard, 0)))
            elif counter < max(mark.get(shard, 0), self._counted.get(shard, 0)) or self._counted.get(shard, 0) > up_to:
                lost = True  # went backwards, or a number seen at the last check was never heard
        if lost:
            self._forget()
            # Whatever was published up to the counters is in every read from now on.
            for shard, counter in enumerate(counters):
                self._advance(shard, max(counter, self._heard_up_to.get(shard, 0)))
        self._counted = dict(enumerate(counters))
        self._checked = time.monotonic()
        return lost

    def suspend(self) -> None:
        """The counters could not be read: serve nothing from memory until they can."""
        self._checked = float("-inf")

    def reset(self, connected: bool) -> None:
        """The subscription (re)started or broke: forget everything, and the numbers heard."""
        self.connected = connected
        self._forget()
        self._heard_up_to.clear()
        self._heard_beyond.clear()
        self._highest.clear()
        self._counted.clear()
        self._checked = float("-inf")

    def _forget(self) -> None:
        """Drop every entry and every move: nothing held is trusted any more."""
        self.changes += 1
        self.epoch += 1
        self.moved += 1
        self.moves.clear()
        self._recent.clear()
        self._entries.clear()
