"""Redis key names. Everything lives under one configurable prefix.

Usernames come from Postgres as writers stored them: any text at all. So a
username never becomes part of a key as it is, unless it is plain, that is
made of `[a-z0-9._]` only, as every name the API accepts is once normalized
(its document key is `status:{username}`, as the contract says). Any other name
is written `~` + its percent-encoding: `status:~%40recent`. The service's own
keys start with `@`, which neither form can produce, so no username can name
one of them, nor another username's key.

Redis Cluster places a key by its hash tag (the text between `{` and `}`)
when it has one; encoded names hold no braces, so a username cannot pick a
slot either. Keys a Lua script touches together share a tag: the keys of one
queue shard share `{prefix + shard}`, the generation and rebuild markers share
`{prefix}`. Documents have no tag: each lives on its own slot.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from urllib.parse import quote, unquote

from shared.model.queue_entry import PENDING, state_of

DEFAULT_PREFIX = "status:"
# Bumped when keys or values change shape: a store written by an older layout is rebuilt.
LAYOUT = 2
_PLAIN = re.compile(r"[a-z0-9._]+")
_ENCODED = "~"


def token(username: str) -> str:
    """How `username` appears in keys and change messages: itself if plain, else `~` + percent-encoding."""
    return username if _PLAIN.fullmatch(username) else _ENCODED + quote(username, safe="")


def username_of_token(text: str) -> str:
    """The username a token stands for (ValueError for text no username produces)."""
    name = unquote(text[1:], errors="strict") if text.startswith(_ENCODED) else text
    if token(name) != text:  # only the one form `token` writes
        raise ValueError(f"not a username token: {text!r}")
    return name


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
        """`status:{username}`: the JSON status document (`status:~{encoded}` for a name that is not plain)."""
        return self.prefix + token(username)

    def username_of(self, key: str) -> str:
        """The username a document key names (ValueError for a key this layout never writes)."""
        return username_of_token(key[len(self.prefix) :])

    @property
    def document_pattern(self) -> str:
        """A SCAN pattern for document keys only."""
        return f"{self.prefix}[^@]*"

    def shard_of(self, username: str) -> int:
        """The queue shard that holds `username`'s active rows (stable across processes)."""
        return zlib.crc32(username.encode()) % self.shards if self.shards > 1 else 0

    def _tagged(self, name: str, shard: int) -> str:
        return f"{self.prefix}@{name}{{{self.prefix}{shard}}}"

    def pending(self, shard: int) -> str:
        """Sorted set of one shard's pending queue entries, ordered like the queue (all scores 0)."""
        return self._tagged("pending", shard)

    def running(self, shard: int) -> str:
        """Sorted set of one shard's PROCESSING queue entries, ordered like the queue (all scores 0)."""
        return self._tagged("running", shard)

    def meta(self, shard: int) -> str:
        """Hash of one shard: username -> what Redis holds for it (`shared.redis_store.records.Meta`)."""
        return self._tagged("meta", shard)

    def windows(self, shard: int) -> str:
        """Hash of one shard: running rebuild -> its snapshot version; deletions are kept as tombstones meanwhile."""
        return self._tagged("windows", shard)

    def seq(self, shard: int) -> str:
        """Counter of one shard's change messages: readers compare it with what they heard."""
        return self._tagged("seq", shard)

    def queue_sets(self, shard: int) -> list[str]:
        """The two sorted sets of one shard's active rows: pending, then running."""
        return [self.pending(shard), self.running(shard)]

    def set_of(self, shard: int, member: str) -> str:
        """The sorted set that holds the queue entry `member` (pending or running, as its state says)."""
        return self.pending(shard) if state_of(member) == PENDING else self.running(shard)

    def shard_keys(self, shard: int) -> list[str]:
        """The keys the write scripts take for one shard, in their order."""
        return [self.pending(shard), self.running(shard), self.meta(shard), self.windows(shard), self.seq(shard)]

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
    def quarantine(self) -> str:
        """Hash: username -> why its rows cannot be projected (JSON), until they can."""
        return f"{self.prefix}@quarantine"

    @property
    def generation(self) -> str:
        """Present once the projection (of this layout) is complete; gone after a flush or an empty restart."""
        return f"{self.prefix}@generation{LAYOUT}{{{self.prefix}}}"

    @property
    def rebuild_marker(self) -> str:
        """Set while a rebuild after data loss runs; a flush meanwhile removes it."""
        return f"{self.prefix}@rebuilding{{{self.prefix}}}"

    @property
    def refreshed(self) -> str:
        """When the last full rebuild finished (epoch seconds): the schedule of the periodic refresh."""
        return f"{self.prefix}@refreshed{{{self.prefix}}}"

    @property
    def heartbeat(self) -> str:
        """The projector's liveness, with a TTL."""
        return f"{self.prefix}@heartbeat"

    @property
    def changes_channel(self) -> str:
        """Pub/sub channel of change messages (`shared.redis_store.records.ChangeMessage`)."""
        return f"{self.prefix}@changes"

    def legacy(self) -> list[str]:
        """Keys earlier layouts wrote that this one does not read: removed when the store is rebuilt."""
        old = [f"{self.prefix}@generation{{{self.prefix}}}"]
        old += [self._tagged("members", s) for s in self.all_shards]
        return old

    def typed(self) -> dict[str, str]:
        """The service's keys with the Redis type each must have (a store written before names were
        encoded may hold a document under one of them)."""
        typed = {self.recent: "zset", self.estimates: "hash", self.quarantine: "hash", self.heartbeat: "string",
                 self.generation: "string", self.rebuild_marker: "string", self.refreshed: "string"}
        for s in self.all_shards:
            typed.update({self.pending(s): "zset", self.running(s): "zset", self.meta(s): "hash",
                          self.windows(s): "hash", self.seq(s): "string"})
        return typed
