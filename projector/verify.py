"""`profile-status verify`: does Redis say what Postgres says now?

Every username Postgres knows must have a document equal to the one the shared
rules compute (the TTL policy keeps all of them alive), every document Redis
holds must agree with Postgres, and the active-queue set must hold exactly the
active rows. Differences seen once are checked again after a short settling
time, so changes the projector is applying at that moment do not count.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
from psycopg import AsyncConnection, IsolationLevel

from shared.keys import Keys
from shared.store import Command, Projection, StatusStore
from shared.truth import read_usernames, stream_all

SETTLE_S = 2.0
SCAN_COUNT = 1000
MAX_EXAMPLES = 5


@dataclass
class Report:
    """The outcome: usernames compared and the differences that persisted."""

    usernames: int = 0
    differences: dict[str, str] = field(default_factory=dict)
    queue_size_redis: int = 0
    queue_size_postgres: int = 0
    counts_redis: dict[str, int] = field(default_factory=dict)
    counts_postgres: dict[str, int] = field(default_factory=dict)

    @property
    def count(self) -> int:
        """Differences; a queue-size or per-priority-count mismatch counts as one each."""
        return (
            len(self.differences)
            + (self.queue_size_redis != self.queue_size_postgres)
            + (self.counts_redis != self.counts_postgres)
        )

    def lines(self) -> list[str]:
        """A human summary with a few examples."""
        out = [f"{self.count} differences among {self.usernames} usernames"]
        if self.queue_size_redis != self.queue_size_postgres:
            out.append(
                f"  active queue: Redis holds {self.queue_size_redis} entries, Postgres {self.queue_size_postgres}"
            )
        if self.counts_redis != self.counts_postgres:
            out.append(f"  active counts: Redis {self.counts_redis}, Postgres {self.counts_postgres}")
        for name, why in list(self.differences.items())[:MAX_EXAMPLES]:
            out.append(f"  {name}: {why}")
        return out


async def _compare(store: StatusStore, projections: list[Projection]) -> dict[str, str]:
    """Differences between expected projections and what Redis holds, by username."""
    k = store.keys
    groups = [_by_set(k, p.document.username, p.active_members) for p in projections]
    commands: list[Command] = []
    for p, group in zip(projections, groups, strict=True):
        name = p.document.username
        commands.append(("GET", k.document(name)))
        commands.append(("HGET", k.active_members(k.shard_of(name)), name))
        commands += [("ZMSCORE", key, *members) for key, members in group.items()]
    replies = iter(await store.run(commands))
    out: dict[str, str] = {}
    for p, group in zip(projections, groups, strict=True):
        doc, held = next(replies), next(replies)
        scores = [score for _ in group for score in next(replies)]
        expected = p.document
        held_members = (held or b"").decode().partition(" ")[2]
        if doc is None:
            if expected.state.value != "not_found":
                out[expected.username] = "document missing"
        elif (stored := orjson.loads(doc)).get("digest") != expected.digest:
            out[expected.username] = f"document says {_summary(stored)}, Postgres says {_summary(expected.model_dump(mode='json'))}"
        elif held_members != " ".join(p.active_members):
            out[expected.username] = "active queue entries differ"
        elif any(score is None for score in scores):
            out[expected.username] = "active queue entry missing"
    return out


def _by_set(keys: Keys, username: str, members: Sequence[str]) -> dict[str, list[str]]:
    """A username's members by the queue set that should hold each."""
    out: dict[str, list[str]] = {}
    for m in members:
        out.setdefault(keys.set_of(keys.shard_of(username), m), []).append(m)
    return out


def _summary(doc: dict) -> str:  # type: ignore[type-arg]
    queue = doc.get("queue") or {}
    return f"{doc.get('state')}/{queue.get('status')}/{queue.get('priority')}/attempts={queue.get('attempts')}"


async def _check_usernames(store: StatusStore, conn: AsyncConnection, names: list[str]) -> dict[str, str]:
    async with conn.transaction():
        snap = await read_usernames(conn, names)
    return await _compare(store, snap.projections(datetime.now(UTC)))


_ACTIVE_COUNTS = """
SELECT (CASE priority WHEN 'HIGH' THEN '0' WHEN 'MEDIUM' THEN '1' ELSE '2' END)
       || (CASE status WHEN 'PENDING' THEN 'P' ELSE 'R' END), count(*)
FROM queue WHERE status IN ('PENDING', 'PROCESSING') GROUP BY 1
"""


async def _queue_totals(store: StatusStore, conn: AsyncConnection, report: Report) -> None:
    """Compare the active-queue size and the per-priority/status counters."""
    async with conn.transaction():
        cur = await conn.execute(_ACTIVE_COUNTS)
        report.counts_postgres = {k: int(n) for k, n in await cur.fetchall()}
    report.queue_size_postgres = sum(report.counts_postgres.values())
    report.queue_size_redis = (await store.queue_sizes())[0]
    report.counts_redis = await store.active_counts()


async def verify(
    conn: AsyncConnection,
    store: StatusStore,
    *,
    settle_s: float = SETTLE_S,
    progress: Callable[[int], None] | None = None,
) -> Report:
    """Compare every username in Postgres and in Redis; see the module docstring."""
    report = Report()
    await conn.set_isolation_level(IsolationLevel.REPEATABLE_READ)
    seen: set[str] = set()
    suspects: dict[str, str] = {}
    async with conn.transaction():
        async for snap in stream_all(conn):
            seen.update(snap.rows)
            suspects.update(await _compare(store, snap.projections(datetime.now(UTC))))
            if progress:
                progress(len(snap.rows))
    await _queue_totals(store, conn, report)
    unknown: list[str] = []
    async for key in store.redis.scan_iter(match=store.keys.document_pattern, count=SCAN_COUNT):
        name = store.keys.username_of(key.decode())
        if name not in seen:
            unknown.append(name)
    for i in range(0, len(unknown), SCAN_COUNT):
        suspects.update(await _check_usernames(store, conn, unknown[i : i + SCAN_COUNT]))
    report.usernames = len(seen | set(unknown))

    if suspects or report.count:
        # A second look after the projector had time to apply what was in flight.
        await asyncio.sleep(settle_s)
        names = sorted(suspects)
        for i in range(0, len(names), SCAN_COUNT):
            report.differences.update(await _check_usernames(store, conn, names[i : i + SCAN_COUNT]))
        await _queue_totals(store, conn, report)
    return report
