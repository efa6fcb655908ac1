"""The Redis side of the projection: writing documents safely and reading them in one round trip."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from importlib import resources

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from shared.document import State, StatusDocument
from shared.keys import Keys

# Documents of known usernames outlive any plausible projector outage; the projector
# refreshes them long before they expire. NOT_FOUND documents are a short negative cache.
DOCUMENT_TTL_S = 7 * 24 * 3600
NOT_FOUND_TTL_S = 60


@dataclass(frozen=True, slots=True)
class TtlPolicy:
    """How long each kind of document lives in Redis."""

    document_s: int = DOCUMENT_TTL_S
    not_found_s: int = NOT_FOUND_TTL_S

    def ttl_for(self, doc: StatusDocument) -> int:
        """Seconds `doc` lives after it was last written or confirmed."""
        return self.not_found_s if doc.state is State.NOT_FOUND else self.document_s


@dataclass(frozen=True, slots=True)
class Projection:
    """What the projector writes for one username: its document and its active queue rows."""

    document: StatusDocument
    active_members: Sequence[str]


WRITTEN, UNCHANGED, STALE = 2, 1, 0
PRIORITY_RANKS = "012"
_EPOCH_OFFSET_US = 10**17  # as in shared.rules: member timestamps are offset microseconds
WAS_PENDING, WAS_PROCESSING = 1, 2


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    """How many writes Redis took, found unchanged, or rejected as older than what it holds.

    `codes` has one entry per projection: outcome + 10 * previous status
    (`WAS_PENDING`, `WAS_PROCESSING`, 0 otherwise), for measuring transitions.
    """

    written: int = 0
    unchanged: int = 0
    stale: int = 0
    codes: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class RawStatus:
    """One poll's read: the stored document and the job's rank among active rows."""

    document: bytes | None
    rank: int | None
    queue_size: int
    # False while the projection is being (re)built: ranks are then incomplete.
    complete: bool


def _lua(name: str) -> str:
    return resources.files("shared").joinpath("lua", name).read_text()


class StatusStore:
    """Reads and writes status documents under one key prefix."""

    def __init__(self, redis: Redis, keys: Keys | None = None, ttl: TtlPolicy | None = None) -> None:
        self.redis = redis
        self.keys = keys or Keys()
        self.ttl = ttl or TtlPolicy()
        self._write = redis.register_script(_lua("write_status.lua"))
        self._read = redis.register_script(_lua("read_status.lua"))
        self._unlist = redis.register_script(_lua("unlist_members.lua"))
        self._older = redis.register_script(_lua("older_documents.lua"))

    async def write(self, projections: Sequence[Projection]) -> WriteOutcome:
        """Store each projection unless Redis already holds a newer version (one pipeline)."""
        if not projections:
            return WriteOutcome()
        k = self.keys
        now_ms = int(time.time() * 1000)
        pipe = self.redis.pipeline(transaction=False)
        for p in projections:
            doc = p.document
            await self._write(
                keys=[
                    k.document(doc.username),
                    k.active_queue,
                    k.active_members,
                    k.pending,
                    k.recent,
                ],
                args=[
                    doc.username,
                    doc.version,
                    doc.digest,
                    doc.model_dump_json(),
                    self.ttl.ttl_for(doc),
                    " ".join(p.active_members),
                    k.changes_channel,
                    now_ms,
                ],
                client=pipe,
            )
        codes = tuple(int(c) for c in await pipe.execute())
        outcomes = [c % 10 for c in codes]
        return WriteOutcome(
            written=outcomes.count(WRITTEN),
            unchanged=outcomes.count(UNCHANGED),
            stale=outcomes.count(STALE),
            codes=codes,
        )

    def read_counts(self, pipe: Pipeline) -> None:
        """Queue on `pipe` the reads of the active counts and oldest pending jobs; parse with `parse_counts`."""
        k = self.keys
        for rank in PRIORITY_RANKS:
            low, high = f"[{rank}:", f"({rank};"  # every member of this priority rank
            pipe.zlexcount(k.active_queue, low, high)
            pipe.zlexcount(k.pending, low, high)
            pipe.zrange(k.pending, low, high, bylex=True, offset=0, num=1)

    @staticmethod
    def parse_counts(replies: Sequence[Any]) -> tuple[dict[str, int], int | None]:
        """({"0P": pending HIGH rows, "0R": running HIGH rows, ...} without zeros, oldest pending
        timestamp in µs since the epoch or None) from the replies of `read_counts`."""
        counts: dict[str, int] = {}
        oldest: int | None = None
        for i, rank in enumerate(PRIORITY_RANKS):
            active, pending, first = replies[3 * i : 3 * i + 3]
            for state, n in (("P", int(pending)), ("R", int(active) - int(pending))):
                if n:
                    counts[rank + state] = n
            if first and int(first[0][2:22]) > 0:  # a NULL timestamp has no age
                us = int(first[0][2:22]) - _EPOCH_OFFSET_US
                oldest = us if oldest is None else min(oldest, us)
        return counts, oldest

    async def active_counts(self) -> dict[str, int]:
        """Active rows per "{priority rank}{P|R}" (one round trip)."""
        pipe = self.redis.pipeline(transaction=False)
        self.read_counts(pipe)
        return self.parse_counts(await pipe.execute())[0]

    async def older_than(self, usernames: Sequence[str], version: int) -> list[str]:
        """Of `usernames`, those whose document is missing or older than `version` (compared in Redis)."""
        if not usernames:
            return []
        found = await self._older(keys=[self.keys.document(n) for n in usernames], args=[version])
        return [usernames[int(i) - 1] for i in found]

    async def unlist(self, members: Sequence[bytes | str]) -> int:
        """Remove active-queue members no row explains; returns how many entries went."""
        if not members:
            return 0
        k = self.keys
        return int(await self._unlist(keys=[k.active_queue, k.pending], args=list(members)))

    async def read(self, username: str) -> RawStatus:
        """The document of `username` with its rank and the active queue's size."""
        k = self.keys
        doc, rank, size, generation = await self._read(
            keys=[k.document(username), k.active_queue, k.generation]
        )
        return RawStatus(document=doc, rank=rank, queue_size=int(size), complete=bool(generation))
