"""The Redis side of the projection: writing documents safely and reading them cheaply.

One key layout serves a single Redis and a Redis Cluster (see `shared.redis_store.keys`).
Every write follows write_rules.lua: a username's meta field in its queue shard
refuses anything older than what it holds, and a write is announced on the
changes channel in the same step (`shared.redis_store.records` reads both
formats). On a single Redis one script writes and announces 100 usernames a
call. On a cluster, where a document and its shard live on different slots, the
shard's script first (accepting the write and reserving the next change
number), then the document, then the message: a writer that dies between them
leaves a reserved number nobody hears, and readers stop trusting their memory.
A poll is one script on a single Redis (shared with every poll read at the same moment:
`read_many`); on a cluster, two pipelined round trips
(the document with its meta field, then its rank in every shard).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import orjson
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError

from shared.model.document import VERSION_PREFIX, State
from shared.model.queue_entry import PENDING, RANK_NAMES, RUNNING, QueueEntry, rank_bounds, time_of_key
from shared.model.rules import Projection
from shared.model.ttl import TtlPolicy
from shared.redis_store.keys import Keys, token, username_of_token
from shared.redis_store.records import CHANGE_LINE, MOVED_UNLISTED, NO_USERNAME, NONE, Meta, change_line, meta_status
from shared.redis_store.records import NOT_FOUND as META_NOT_FOUND
from shared.redis_store.records import PENDING as META_PENDING
from shared.redis_store.records import PROCESSING as META_PROCESSING

WRITTEN, UNCHANGED, STALE = 2, 1, 0
RECENT_KEPT = 1000
WAS_PENDING, WAS_PROCESSING = 1, 2
# A running rebuild renews its window this often; a crashed one's lapses after WINDOW_LEASE_S.
WINDOW_LEASE_S = 60


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    """How many writes Redis took, found unchanged, or rejected as older than what it holds.

    `codes` has one entry per projection: outcome + 10 * previous status
    (`WAS_PENDING`, `WAS_PROCESSING`, 0 otherwise), for measuring transitions.
    `seqs` maps each shard to the highest change number this write took there.
    """

    written: int = 0
    unchanged: int = 0
    stale: int = 0
    codes: tuple[int, ...] = ()
    seqs: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RawStatus:
    """One poll's read: the stored document and the job's rank among active rows."""

    document: bytes | None
    rank: int | None
    queue_size: int
    # False while the projection is being (re)built: ranks are then incomplete.
    complete: bool
    # The change counter the read reflects (single Redis: every change message up to this
    # number is in it, none after); None on a cluster, whose reads are not one instant.
    seq: int | None = None


# What the scripts take from the Python codecs: each letter is defined once, there.
LUA_PLACEHOLDERS = {
    "@pending@": PENDING,
    "@meta_pending@": META_PENDING,
    "@meta_processing@": META_PROCESSING,
    "@meta_not_found@": META_NOT_FOUND,
    "@version_prefix@": VERSION_PREFIX,
}


def _lua(name: str) -> str:
    """A script's source with the codecs' letters filled in."""
    text = resources.files("shared.redis_store").joinpath("lua", name).read_text()
    for placeholder, value in LUA_PLACEHOLDERS.items():
        text = text.replace(placeholder, value)
    return text


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
_WRITE_BATCH = _Script(_WRITE_RULES + _lua("write_batch.lua"))
_WRITE_META = _Script(_WRITE_RULES + _lua("write_meta.lua"))
_WRITE_DOCUMENT = _Script(_WRITE_RULES + _lua("write_document.lua"))
_READ = _Script(_lua("read_statuses.lua"))
_RANK_IN_SHARD = _Script(_lua("rank_in_shard.lua"))
_PRUNE = _Script(_lua("prune_tombstones.lua"))
_UNLIST = _Script(_lua("unlist.lua"))
# What `read_command` calls, for a client that loads it itself (`shared.redis_store.pipelined`).
READ_SOURCE = _READ.source
_SCRIPTS = (_WRITE_BATCH, _WRITE_META, _WRITE_DOCUMENT, _READ, _RANK_IN_SHARD, _PRUNE, _UNLIST)
# Usernames per write_batch.lua call: Redis runs nothing else meanwhile, so keep each call short (~1 ms).
WRITE_BATCH = 100

Command = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class _Write:
    """One projection as the scripts take it."""

    name: str  # the username's token
    shard: int
    version: str
    digest: str
    status: str
    own: str
    entries: str
    json: bytes
    ttl: int
    forget: str


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

    def _write_of(self, p: Projection) -> _Write:
        doc = p.document
        own = doc.queue.queue_member if doc.queue is not None and doc.queue.queue_member else NONE
        return _Write(
            token(doc.username), self.keys.shard_of(doc.username), str(doc.version), doc.digest, meta_status(doc),
            own, " ".join(p.active_members), doc.to_json(), self.ttl.ttl_for(doc),
            "1" if doc.state is State.NOT_FOUND else "0",
        )

    async def write(self, projections: Sequence[Projection], channel: str | None = None) -> WriteOutcome:
        """Store each projection unless Redis already holds a newer version, and announce what changed.

        `channel` defaults to the deployment's changes channel (tests name another
        to lose a message on purpose).
        """
        if not projections:
            return WriteOutcome()
        writes = [self._write_of(p) for p in projections]
        channel = channel or self.keys.changes_channel
        if self.clustered:
            codes, seqs = await self._write_cluster(writes, channel)
        else:
            codes, seqs = await self._write_single(writes, channel)
        await self._note_recent(projections, codes)
        outcomes = [c % 10 for c in codes]
        return WriteOutcome(
            written=outcomes.count(WRITTEN),
            unchanged=outcomes.count(UNCHANGED),
            stale=outcomes.count(STALE),
            codes=tuple(codes),
            seqs=seqs,
        )

    async def _write_single(self, writes: list[_Write], channel: str) -> tuple[list[int], dict[int, int]]:
        k = self.keys
        commands: list[Command] = []
        for i in range(0, len(writes), WRITE_BATCH):
            batch = writes[i : i + WRITE_BATCH]
            keys = [k.seq(0)]
            args: list[Any] = [channel, CHANGE_LINE]
            for w in batch:
                keys += [k.prefix + w.name, k.pending(w.shard), k.running(w.shard), k.meta(w.shard), k.windows(w.shard)]
                args += [w.version, w.digest, w.status, w.own, w.entries, w.json, w.ttl, w.forget, w.name]
            commands.append(_WRITE_BATCH.command(keys, args))
        codes: list[int] = []
        top = 0
        for reply in await self.run(commands):
            numbers = [int(x) for x in reply]
            codes += numbers[:-1:2]
            top = max(top, numbers[-1])
        return codes, ({0: top} if top else {})

    async def _write_cluster(self, writes: list[_Write], channel: str) -> tuple[list[int], dict[int, int]]:
        k = self.keys
        taken = await self.run([
            _WRITE_META.command(
                [k.pending(w.shard), k.running(w.shard), k.meta(w.shard), k.windows(w.shard), k.seq(w.shard)],
                [w.name, w.version, w.digest, w.status, w.own, w.entries, w.forget],
            )
            for w in writes
        ])
        accepted = [(w, [*(int(x) for x in reply[:5]), reply[5]]) for w, reply in zip(writes, taken, strict=True) if int(reply[0])]
        stored = await self.run([
            _WRITE_DOCUMENT.command([k.prefix + w.name], [w.version, w.json, w.ttl, differs, VERSION_PREFIX])
            for w, (_, _, differs, _, _, _) in accepted
        ])
        outcome = {w.name: int(code) for (w, _), code in zip(accepted, stored, strict=True)}
        lines, seqs = [], {}
        for w, (_, _, _, moved, seq, taken) in accepted:
            if seq:
                lines.append(change_line(w.shard, seq, w.name, w.version, moved, _text(taken)))
                seqs[w.shard] = max(seqs.get(w.shard, 0), seq)
        if lines:
            await self.run([("PUBLISH", channel, "\n".join(lines))])
        previous = {w.name: prev for w, (_, prev, *_) in accepted}
        return [outcome.get(w.name, STALE) + 10 * previous.get(w.name, 0) for w in writes], seqs

    async def _note_recent(self, projections: Sequence[Projection], codes: Sequence[int]) -> None:
        """Note written usernames as recently changed (for the demo page)."""
        now_ms = int(time.time() * 1000)
        recent = {p.document.username: now_ms for p, code in zip(projections, codes, strict=True) if code % 10 == WRITTEN}
        if recent:
            k = self.keys
            await self.run([
                ("ZADD", k.recent, *(x for name, ms in recent.items() for x in (ms, name))),
                ("ZREMRANGEBYRANK", k.recent, 0, -RECENT_KEPT - 1),
            ])

    def read_counts(self, pipe: Pipeline) -> None:
        """Queue on `pipe` the reads of the active counts and oldest pending jobs; parse with `parse_counts`."""
        k = self.keys
        for shard in k.all_shards:
            for rank in range(len(RANK_NAMES)):
                low, high = rank_bounds(rank)
                pipe.zlexcount(k.pending(shard), low, high)
                pipe.zlexcount(k.running(shard), low, high)
                pipe.zrange(k.pending(shard), low, high, bylex=True, offset=0, num=1)

    def parse_counts(self, replies: Sequence[Any]) -> tuple[dict[str, int], int | None]:
        """({"0P": pending HIGH rows, "0R": running HIGH rows, ...} without zeros, oldest pending
        timestamp in µs since the epoch or None) from the replies of `read_counts`."""
        counts: dict[str, int] = {}
        oldest: int | None = None
        ranks = len(RANK_NAMES)
        for i in range(0, len(replies), 3):
            rank = str(i // 3 % ranks)
            pending, running, first = replies[i : i + 3]
            for state, n in ((PENDING, int(pending)), (RUNNING, int(running))):
                if n:
                    counts[rank + state] = counts.get(rank + state, 0) + n
            if first:
                try:
                    us = time_of_key(QueueEntry.parse(first[0]).time)  # None: no age (NULL, an infinity)
                except ValueError:  # not an entry of ours: it tells no age
                    us = None
                if us is not None:
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

    async def metas(self, usernames: Sequence[str]) -> dict[str, Meta | None]:
        """What each username's meta field holds (None: nothing, or a value this layout cannot read)."""
        k = self.keys
        by_shard: dict[int, list[str]] = {}
        for name in usernames:
            by_shard.setdefault(k.shard_of(name), []).append(name)
        replies = await self.run([("HMGET", k.meta(s), *(token(n) for n in names)) for s, names in by_shard.items()])
        out: dict[str, Meta | None] = {}
        for names, values in zip(by_shard.values(), replies, strict=True):
            for name, raw in zip(names, values, strict=True):
                out[name] = _meta_or_none(raw)
        return out

    async def unlist(self, shard: int, key: str, members: Sequence[bytes | str]) -> int:
        """Remove from one of `shard`'s queue sets the members no row explains, and announce it
        (a move not listed: readers drop the positions they hold); returns how many entries went."""
        if not members:
            return 0
        counter = self.keys.seq(shard if self.clustered else 0)
        args = [self.keys.changes_channel, CHANGE_LINE, shard if self.clustered else 0, NO_USERNAME, MOVED_UNLISTED]
        return int((await self.run([_UNLIST.command([key, counter], [*args, *members])]))[0])

    async def seqs(self) -> list[int]:
        """Each shard's change counter (0 where none was taken yet)."""
        replies = await self.run([("GET", self.keys.seq(s)) for s in self.keys.all_shards])
        return [int(r or 0) for r in replies]

    async def skip_seqs(self) -> None:
        """Take a change number in every shard without announcing it: readers forget what they remember
        (after a failed script, which may have written part of its batch unannounced)."""
        await self.run([("INCR", self.keys.seq(s)) for s in self.keys.all_shards])

    async def raise_seqs(self, floors: dict[int, int]) -> None:
        """Lift change counters to at least the given values (after Redis lost writes: readers then
        see numbers they never heard and forget what they remember)."""
        replies = await self.seqs()
        commands: list[Command] = [("SET", self.keys.seq(s), floor + 1) for s, floor in floors.items() if replies[s] <= floor]
        await self.run(commands)

    async def hold_window(self, rebuild: str, version: int = 0) -> None:
        """Open or renew a running rebuild's window in every shard (deletions become tombstones
        until it closes), with its snapshot version once known (0 before: no tombstone may go)."""
        k = self.keys
        commands: list[Command] = []
        for s in k.all_shards:
            commands += [("HSET", k.windows(s), rebuild, version), ("EXPIRE", k.windows(s), WINDOW_LEASE_S)]
        await self.run(commands)

    async def close_window(self, rebuild: str, scan_count: int = 1000) -> int:
        """Close the rebuild's window in every shard and drop the tombstones nobody needs any more."""
        k = self.keys
        dropped = 0
        for s in k.all_shards:
            tombstones: list[str] = []
            async for name, raw in self.redis.hscan_iter(k.meta(s), count=scan_count):
                meta = _meta_or_none(raw)
                if meta is not None and meta.tombstone:
                    tombstones.append(name.decode())
            for i in range(0, max(1, len(tombstones)), scan_count):
                chunk = tombstones[i : i + scan_count]
                dropped += int((await self.run([_PRUNE.command([k.windows(s), k.meta(s)], [rebuild, *chunk])]))[0])
        return dropped

    async def quarantine(self, reasons: dict[str, str]) -> None:
        """Record usernames whose rows cannot be projected, with why (JSON: reason, since)."""
        if reasons:
            now = round(time.time(), 3)
            fields = {token(name): orjson.dumps({"reason": why, "since": now}) for name, why in reasons.items()}
            await self.redis.hset(self.keys.quarantine, mapping=fields)  # type: ignore[arg-type]

    async def release(self, usernames: Sequence[str]) -> None:
        """Take usernames out of quarantine (they projected)."""
        if usernames:
            await self.redis.hdel(self.keys.quarantine, *(token(n) for n in usernames))

    async def quarantined(self) -> dict[str, str]:
        """Every username in quarantine, with why."""
        raw = await self.redis.hgetall(self.keys.quarantine)
        out = {}
        for name, value in raw.items():
            with contextlib.suppress(ValueError):
                out[username_of_token(_text(name))] = str(orjson.loads(value).get("reason", ""))
        return out

    async def upgrade_layout(self) -> int:
        """Remove what earlier layouts left that this one would trip on; returns how many keys went.

        Keys this layout no longer reads, and service keys of the wrong type
        (before usernames were encoded, a queue row named like one of them had a
        document written there).
        """
        k = self.keys
        doomed = list(k.legacy())
        typed = list(k.typed().items())
        types = await self.run([("TYPE", key) for key, _ in typed])
        doomed += [key for (key, want), have in zip(typed, types, strict=True) if _text(have) not in (want, "none")]
        return sum(int(n) for n in await self.run([("DEL", key) for key in doomed]))

    async def read(self, username: str) -> RawStatus:
        """The document of `username` with its rank and the active queue's size."""
        if not self.clustered:
            return (await self.read_many([username]))[0]
        return await self._read_clustered(username)

    async def read_many(self, usernames: Sequence[str]) -> list[RawStatus]:
        """`read` of each username: on a single Redis in one script call, so all at one instant."""
        if self.clustered:
            return list(await asyncio.gather(*(self._read_clustered(name) for name in usernames)))
        return self.parse_read((await self.run([self.read_command(usernames)]))[0])

    def read_command(self, usernames: Sequence[str]) -> Command:
        """The script call `read_many` makes on a single Redis (its reply: `parse_read`; its source: `READ_SOURCE`)."""
        k = self.keys
        keys = [k.generation, k.seq(0), *(key for s in k.all_shards for key in k.queue_sets(s))]
        args: list[Any] = [len(k.all_shards)]
        for username in usernames:
            shard = k.shard_of(username)
            keys += [k.document(username), k.meta(shard)]
            args += [token(username), shard]
        return _READ.command(keys, args)

    @staticmethod
    def parse_read(reply: Sequence[Any]) -> list[RawStatus]:
        """The reply to `read_command`, one `RawStatus` per username asked for."""
        generation, size, seq, *pairs = reply
        complete, queue_size, seq = bool(generation), int(size), int(seq)
        return [
            RawStatus(document=pairs[i], rank=pairs[i + 1], queue_size=queue_size, complete=complete, seq=seq)
            for i in range(0, len(pairs), 2)
        ]

    async def _read_clustered(self, username: str) -> RawStatus:
        k = self.keys
        shard = k.shard_of(username)
        name = token(username)
        doc, held, generation = await self.run([("GET", k.document(username)), ("HGET", k.meta(shard), name), ("EXISTS", k.generation)])
        meta = _meta_or_none(held)
        if doc is None or meta is None or meta.own is None:
            return RawStatus(document=doc, rank=None, queue_size=0, complete=bool(generation))
        parts = await self.run(
            [_RANK_IN_SHARD.command(k.queue_sets(s), [meta.own, int(s == shard)], read_only=True) for s in k.all_shards]
        )
        return RawStatus(
            document=doc,
            rank=sum(int(before) for before, _, _ in parts) if any(int(p[2]) for p in parts) else None,
            queue_size=sum(int(size) for _, size, _ in parts),
            complete=bool(generation),
        )


def _meta_or_none(raw: bytes | None) -> Meta | None:
    if raw is None:
        return None
    try:
        return Meta.parse(raw)
    except ValueError:
        return None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
