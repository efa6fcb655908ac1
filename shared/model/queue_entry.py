"""The queue order, defined once: priority ranks, and the queue-entry string that sorts like the queue. Pure.

An active row is filed in Redis as the entry

    "{rank}:{time}:{row id}:{owner tag}:{P|R}"

- rank: 0 HIGH, 1 MEDIUM, 2 every other priority (as the seed's COUNT queries rank them);
- time: the row's `timestamp` as 20 digits, microseconds since the epoch plus 10**18
  (every instant Postgres holds fits); NULL and `-infinity` are all zeros, as
  Postgres' `COALESCE(timestamp, '-infinity')` orders them, `infinity` all nines;
- row id: the UUID's text;
- owner tag: 8 hex digits of a hash of the username the row is filed under;
- P while PENDING, R while PROCESSING (and the set that holds it).

Entries compare as strings in queue order, so a job's position is the number of
entries before its own; a priority's entries are those between `rank_bounds`.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from shared.model.instants import Instant, epoch_us

# Ranks 0, 1, ...: the priorities served first, in order; every other value ranks after them.
PRIORITIES = ("HIGH", "MEDIUM")
LOWEST_RANK = len(PRIORITIES)
# How overviews name each rank: the last stands for every priority not listed above.
RANK_NAMES = (*PRIORITIES, "LOW")
_RANKS = {name: rank for rank, name in enumerate(PRIORITIES)}

EPOCH_OFFSET_US = 10**18
TIME_WIDTH = 20
_OLDEST = "0" * TIME_WIDTH  # NULL and -infinity
_NEWEST = "9" * TIME_WIDTH  # infinity
PENDING, RUNNING = "P", "R"


def priority_rank(priority: str | None) -> int:
    """HIGH before MEDIUM before everything else."""
    return _RANKS.get(priority or "", LOWEST_RANK)


def sql_priority_rank(column: str = "priority") -> str:
    """`priority_rank` as a SQL expression over `column`, its operator named with its schema
    (a bare `=` on a varchar could be a function another role planted)."""
    cases = " ".join(f"WHEN {column} OPERATOR(pg_catalog.=) '{name}' THEN {rank}" for name, rank in _RANKS.items())
    return f"(CASE {cases} ELSE {LOWEST_RANK} END)"


def time_key(ts: Instant | None) -> str:
    """The entry's time field for a row's `timestamp`: sorts like the instants, NULL first."""
    if ts is None:
        return _OLDEST
    us = epoch_us(ts)
    if us == -math.inf:
        return _OLDEST
    if us == math.inf:
        return _NEWEST
    return f"{int(us) + EPOCH_OFFSET_US:020d}"


def time_of_key(key: str) -> int | None:
    """Microseconds since the epoch of an entry's time field; None for NULL and the infinities."""
    if key in (_OLDEST, _NEWEST):
        return None
    return int(key) - EPOCH_OFFSET_US


def owner_tag(owner: str) -> str:
    """The short hash of the username an entry is filed under."""
    return hashlib.blake2b(owner.encode(), digest_size=4).hexdigest()


def encode(rank: int, time: str, row_id: str, tag: str, running: bool) -> str:
    """An entry from its parts (`time` from `time_key`, `tag` from `owner_tag`)."""
    return f"{rank}:{time}:{row_id}:{tag}:{RUNNING if running else PENDING}"


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """An entry taken apart."""

    rank: int
    time: str
    row_id: str
    tag: str
    state: str  # PENDING or RUNNING

    @classmethod
    def parse(cls, entry: str | bytes) -> QueueEntry:
        """The parts of an entry; ValueError for anything that is not one."""
        text = entry.decode() if isinstance(entry, bytes) else entry
        rank, time, row_id, tag, state = text.split(":")
        if state not in (PENDING, RUNNING) or len(time) != TIME_WIDTH:
            raise ValueError(f"not a queue entry: {text!r}")
        return cls(int(rank), time, row_id, tag, state)


def state_of(entry: str | bytes) -> str:
    """PENDING or RUNNING: the entry's last letter."""
    return chr(entry[-1]) if isinstance(entry, bytes) else entry[-1]


def rank_bounds(rank: int) -> tuple[str, str]:
    """ZLEXCOUNT/ZRANGE BYLEX bounds that hold exactly the entries of one rank."""
    return f"[{rank}:", f"({rank};"  # ";" is the character after ":"
