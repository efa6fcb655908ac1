"""Redis key names. Everything lives under one configurable prefix.

A normalized username is made of `[a-z0-9._]`, so the service's own keys use
`@`, which no username can contain, and never collide with a document key.

Redis Cluster places a key by its hash tag (the text between `{` and `}`)
when it has one. Keys a Lua script touches together share a tag: the three
keys of one queue shard share `{prefix + shard}`, the generation and rebuild
markers share `{prefix}`. Documents have no tag: each lives on its own slot.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

DEFAULT_PREFIX = "status:"
# Published on the changes channel by the active projector every heartbeat; no username contains "@".
BEAT = "@beat"


@dataclass(frozen=True, slots=True)
class Keys:
    """The names of every key and channel the projector writes, for one prefix."""

    prefix: str = DEFAULT_PREFIX
    # The active queue is split into this many shards by username, so that on a
    # cluster no single key takes every poll and every change.
    shards: int = 1

    def __post_init__(self) -> None:
        if self.shards < 1:
            raise ValueError(f"queue shards must be at least 1, not {self.shards}")

    def document(self, username: str) -> str:
        """`status:{username}`: the JSON status document."""
        return f"{self.prefix}{username}"

    def username_of(self, key: str) -> str:
        """The username a document key names."""
        return key[len(self.prefix) :]

    @property
    def document_pattern(self) -> str:
        """A SCAN pattern for document keys only."""
        return f"{self.prefix}[^@]*"

    def shard_of(self, username: str) -> int:
        """The queue shard that holds `username`'s active rows (stable across processes)."""
        return zlib.crc32(username.encode()) % self.shards if self.shards > 1 else 0

    def pending(self, shard: int) -> str:
        """Sorted set of one shard's pending queue rows, ordered like the queue (all scores 0)."""
        return f"{self.prefix}@pending{{{self.prefix}{shard}}}"

    def running(self, shard: int) -> str:
        """Sorted set of one shard's PROCESSING queue rows, ordered like the queue (all scores 0)."""
        return f"{self.prefix}@running{{{self.prefix}{shard}}}"

    def active_members(self, shard: int) -> str:
        """Hash of one shard: username -> "{version} {its active members...}" (the version alone when none)."""
        return f"{self.prefix}@members{{{self.prefix}{shard}}}"

    def queue_sets(self, shard: int) -> list[str]:
        """The two sorted sets of one shard's active rows: pending, then running."""
        return [self.pending(shard), self.running(shard)]

    def set_of(self, shard: int, member: str) -> str:
        """The sorted set that holds `member` (its last letter says P for pending, R for running)."""
        return self.pending(shard) if member.endswith("P") else self.running(shard)

    def shard_keys(self, shard: int) -> list[str]:
        """The keys `write_members.lua` takes, for one shard."""
        return [self.pending(shard), self.running(shard), self.active_members(shard)]

    @property
    def all_shards(self) -> range:
        """Every shard number."""
        return range(self.shards)

    @property
    def recent(self) -> str:
        """Sorted set: username -> when its document last changed (ms), the newest 1,000."""
        return f"{self.prefix}@recent"

    @property
    def estimates(self) -> str:
        """Hash of measured averages (processing and waiting times) kept by the projector."""
        return f"{self.prefix}@estimates"

    def completions(self, minute: int) -> str:
        """Counter of jobs completed in one minute (epoch minutes), with a TTL."""
        return f"{self.prefix}@completions:{minute}"

    @property
    def generation(self) -> str:
        """Present once the projection is complete; gone after a flush or an empty restart."""
        return f"{self.prefix}@generation{{{self.prefix}}}"

    @property
    def rebuild_marker(self) -> str:
        """Set while a rebuild after data loss runs; a flush meanwhile removes it."""
        return f"{self.prefix}@rebuilding{{{self.prefix}}}"

    @property
    def heartbeat(self) -> str:
        """The projector's liveness, with a TTL."""
        return f"{self.prefix}@heartbeat"

    @property
    def changes_channel(self) -> str:
        """Pub/sub channel: `"{username} {version} {1 if the active queue changed else 0}"` per change."""
        return f"{self.prefix}@changes"
