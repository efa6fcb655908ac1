"""The Redis side of the projection: writing documents safely and reading them cheaply.

One key layout serves a single Redis and a Redis Cluster (see `shared.keys`).
Every write follows write_rules.lua: a document, and a username's entries in
its queue shard, each refuse anything older than what they hold. On a cluster
the two are separate scripts (their keys live on different slots) and converge
on the newest version whichever order they land in; on a single Redis one
script applies both, for 100 usernames a call. Change messages are published
once the writes have answered, so a reader that hears one finds them.
A poll is one script on a single Redis; on a cluster, two pipelined round trips
(the document, then its rank in every shard), spread over the nodes.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError

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
MEMBERS_MOVED = 2
RECENT_KEPT = 1000
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


@dataclass(frozen=True, slots=True)
class _Script:
    """A Lua script called by its SHA; loaded into Redis (every node of a cluster) on NOSCRIPT."""

    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())

    def command(self, keys: Sequence[str], args: Sequence[Any], *, read_only: bool = False) -> tuple[Any, ...]:
        # EVALSHA_RO may run on a replica (when the client reads from replicas).
        return ("EVALSHA_RO" if read_only else "EVALSHA", self.sha, len(keys), *keys, *args)


_WRITE_RULES = _lua("write_rules.lua")
_WRITE_DOCUMENT = _Script(_WRITE_RULES + _lua("write_document.lua"))
_WRITE_MEMBERS = _Script(_WRITE_RULES + _lua("write_members.lua"))
_WRITE_BATCH = _Script(_WRITE_RULES + _lua("write_batch.lua"))
_PUBLISH_ALL = _Script(_lua("publish_all.lua"))
_READ = _Script(_lua("read_status.lua"))
_OLDER = _Script(_lua("older_documents.lua"))
_RANK_IN_SHARD = _Script(_lua("rank_in_shard.lua"))
_SCRIPTS = (_WRITE_DOCUMENT, _WRITE_MEMBERS, _WRITE_BATCH, _PUBLISH_ALL, _READ, _OLDER, _RANK_IN_SHARD)
# Usernames per write_batch.lua call: Redis runs nothing else meanwhile, so keep each call short (~1 ms).
WRITE_BATCH = 100

Command = tuple[Any, ...]


class StatusStore:
    """Reads and writes status documents under one key prefix, on a single Redis or a cluster."""

    def __init__(self, redis: Redis | RedisCluster, keys: Keys | None = None, ttl: TtlPolicy | None = None) -> None:
        self.redis = redis
        self.keys = keys or Keys()
        self.ttl = ttl or TtlPolicy()
        self.clustered = isinstance(redis, RedisCluster)

    async def run(self, commands: Sequence[Command]) -> list[Any]:
        """Send `commands` in one pipeline (per node on a cluster); load our scripts and retry once on NOSCRIPT."""
        if not commands:
            return []
        for attempt in (1, 2):
            pipe = self.redis.pipeline(transaction=False)
            for command in commands:
                pipe.execute_command(*command)
            try:
                return list(await pipe.execute())
            except NoScriptError:
                # A restarted, flushed or new node has no scripts; every call here is safe to repeat.
                if attempt == 2:
                    raise
                await self._load_scripts()
        raise AssertionError("unreachable")

    async def _load_scripts(self) -> None:
        for script in _SCRIPTS:
            if self.clustered:  # replicas too: they run the read-only calls
                await self.redis.execute_command("SCRIPT LOAD", script.source, target_nodes=RedisCluster.ALL_NODES)
            else:
                await self.redis.script_load(script.source)

    async def write(self, projections: Sequence[Projection]) -> WriteOutcome:
        """Store each projection unless Redis already holds a newer version, then announce the changes."""
        if not projections:
            return WriteOutcome()
        k = self.keys
        writes = []
        for p in projections:
            doc = p.document
            name = doc.username
            writes.append((
                [k.document(name), *k.shard_keys(k.shard_of(name))],
                [doc.version, doc.digest, doc.to_json(), self.ttl.ttl_for(doc),
                 name, " ".join(p.active_members), "1" if doc.state is State.NOT_FOUND else "0"],
            ))
        commands: list[Command] = []
        if self.clustered:  # a document and its shard live on different slots: a script each
            for keys, (version, digest, json, ttl, name, members, forget) in writes:
                commands.append(_WRITE_DOCUMENT.command(keys[:1], [version, digest, json, ttl]))
                commands.append(_WRITE_MEMBERS.command(keys[1:], [name, version, members, forget]))
            replies = await self.run(commands)
        else:
            for i in range(0, len(writes), WRITE_BATCH):
                batch = writes[i : i + WRITE_BATCH]
                commands.append(_WRITE_BATCH.command(
                    [key for keys, _ in batch for key in keys], [arg for _, args in batch for arg in args]
                ))
            replies = [code for reply in await self.run(commands) for code in reply]
        codes = tuple(int(c) for c in replies[0::2])
        moved = [int(m) == MEMBERS_MOVED for m in replies[1::2]]
        await self._announce(projections, codes, moved)
        outcomes = [c % 10 for c in codes]
        return WriteOutcome(
            written=outcomes.count(WRITTEN),
            unchanged=outcomes.count(UNCHANGED),
            stale=outcomes.count(STALE),
            codes=codes,
        )

    async def _announce(self, projections: Sequence[Projection], codes: Sequence[int], moved: Sequence[bool]) -> None:
        """Publish `"{username} {version} {1 if its queue entries moved else 0}"` per change; note written ones as recent."""
        k = self.keys
        messages: list[str] = []
        recent: dict[str, int] = {}
        now_ms = int(time.time() * 1000)
        for p, code, queue_moved in zip(projections, codes, moved, strict=True):
            written = code % 10 == WRITTEN
            if written or queue_moved:
                doc = p.document
                messages.append(f"{doc.username} {doc.version} {int(queue_moved)}")
            if written:
                recent[p.document.username] = now_ms
        commands: list[Command] = []
        if messages:
            commands.append(_PUBLISH_ALL.command([], [k.changes_channel, *messages]))
        if recent:
            commands.append(("ZADD", k.recent, *(x for name, ms in recent.items() for x in (ms, name))))
            commands.append(("ZREMRANGEBYRANK", k.recent, 0, -RECENT_KEPT - 1))
        await self.run(commands)

    def read_counts(self, pipe: Pipeline) -> None:
        """Queue on `pipe` the reads of the active counts and oldest pending jobs; parse with `parse_counts`."""
        k = self.keys
        for shard in k.all_shards:
            for rank in PRIORITY_RANKS:
                low, high = f"[{rank}:", f"({rank};"  # every member of this priority rank
                pipe.zlexcount(k.pending(shard), low, high)
                pipe.zlexcount(k.running(shard), low, high)
                pipe.zrange(k.pending(shard), low, high, bylex=True, offset=0, num=1)

    def parse_counts(self, replies: Sequence[Any]) -> tuple[dict[str, int], int | None]:
        """({"0P": pending HIGH rows, "0R": running HIGH rows, ...} without zeros, oldest pending
        timestamp in µs since the epoch or None) from the replies of `read_counts`."""
        counts: dict[str, int] = {}
        oldest: int | None = None
        for i in range(0, len(replies), 3):
            rank = PRIORITY_RANKS[i // 3 % len(PRIORITY_RANKS)]
            pending, running, first = replies[i : i + 3]
            for state, n in (("P", int(pending)), ("R", int(running))):
                if n:
                    counts[rank + state] = counts.get(rank + state, 0) + n
            if first and int(first[0][2:22]) > 0:  # a NULL timestamp has no age
                us = int(first[0][2:22]) - _EPOCH_OFFSET_US
                oldest = us if oldest is None else min(oldest, us)
        return counts, oldest

    async def active_counts(self) -> dict[str, int]:
        """Active rows per "{priority rank}{P|R}" (one round trip)."""
        pipe = self.redis.pipeline(transaction=False)
        self.read_counts(pipe)
        return self.parse_counts(await pipe.execute())[0]

    async def queue_sizes(self) -> tuple[int, int]:
        """(active entries, pending entries) over every shard."""
        k = self.keys
        replies = await self.run([("ZCARD", key) for s in k.all_shards for key in k.queue_sets(s)])
        pending, running = sum(int(n) for n in replies[0::2]), sum(int(n) for n in replies[1::2])
        return pending + running, pending

    async def older_than(self, usernames: Sequence[str], version: int) -> list[str]:
        """Of `usernames`, those whose document is missing or older than `version` (compared in Redis)."""
        if not usernames:
            return []
        keys = [self.keys.document(n) for n in usernames]
        if self.clustered:  # documents live on different slots: one call each, pipelined per node
            replies = await self.run([_OLDER.command([key], [version]) for key in keys])
            return [name for name, found in zip(usernames, replies, strict=True) if found]
        found = await self.run([_OLDER.command(keys, [version])])
        return [usernames[int(i) - 1] for i in found[0]]

    async def unlist(self, key: str, members: Sequence[bytes | str]) -> int:
        """Remove from one queue set the members no row explains; returns how many entries went."""
        if not members:
            return 0
        return int(await self.redis.zrem(key, *members))

    async def read(self, username: str) -> RawStatus:
        """The document of `username` with its rank and the active queue's size."""
        k = self.keys
        shard = k.shard_of(username)
        if not self.clustered:
            keys = [k.document(username), k.generation, *(key for s in k.all_shards for key in k.queue_sets(s))]
            doc, rank, size, generation = (await self.run([_READ.command(keys, [shard])]))[0]
            return RawStatus(document=doc, rank=rank, queue_size=int(size), complete=bool(generation))
        doc, generation = await self.run([("GET", k.document(username)), ("EXISTS", k.generation)])
        member = _queue_member(doc)
        if member is None:
            return RawStatus(document=doc, rank=None, queue_size=0, complete=bool(generation))
        parts = await self.run(
            [_RANK_IN_SHARD.command(k.queue_sets(s), [member, int(s == shard)], read_only=True) for s in k.all_shards]
        )
        return RawStatus(
            document=doc,
            rank=sum(int(before) for before, _, _ in parts) if any(int(p[2]) for p in parts) else None,
            queue_size=sum(int(size) for _, size, _ in parts),
            complete=bool(generation),
        )


_MEMBER_FIELD = b'"queue_member":"'


def _queue_member(doc: bytes | None) -> bytes | None:
    """The document's own queue entry, found as read_status.lua finds it."""
    if doc is None:
        return None
    start = doc.find(_MEMBER_FIELD)
    if start < 0:
        return None
    start += len(_MEMBER_FIELD)
    return doc[start : doc.index(b'"', start)]

