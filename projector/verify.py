"""`profile-status verify`: does Redis say what Postgres says now?

Every username Postgres knows must have a document equal to the one the shared
rules compute (the TTL policy keeps all of them alive), every document Redis
holds must agree with Postgres, and the active-queue set must hold exactly the
active rows. Differences seen once are checked again after a short settling
time, so changes the projector is applying at that moment do not count.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
from psycopg import AsyncConnection, IsolationLevel

from shared.model.queue_entry import PENDING, RUNNING
from shared.model.rules import Projection
from shared.postgres.snapshots import ACTIVE, PRIORITY_RANK, Snapshot, read_usernames_isolating, stream_all
from shared.redis_store import scans
from shared.redis_store.store import StatusStore

SETTLE_S = 2.0
SCAN_COUNT = scans.SCAN_COUNT
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
    # Usernames the projector could not project, with why (each also counts as a difference).
    quarantined: dict[str, str] = field(default_factory=dict)

    @property
    def count(self) -> int:
        """Differences; a queue-size or per-priority-count mismatch counts as one each."""
        return (
            len(self.differences | {name: "" for name in self.quarantined})
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
        if self.quarantined:
            out.append(f"  {len(self.quarantined)} usernames in quarantine (their rows cannot be projected):")
            out += [f"    {name!r}: {why}" for name, why in list(self.quarantined.items())[:MAX_EXAMPLES]]
        return out


async def _compare(store: StatusStore, projections: list[Projection]) -> dict[str, str]:
    """Differences between expected projections and what Redis holds, by username."""
    held = await scans.held(store, [p.document.username for p in projections], [p.active_members for p in projections])
    out: dict[str, str] = {}
    for p, (doc, meta, scores) in zip(projections, held, strict=True):
        expected = p.document
        entries = meta.entries if meta is not None else ()
        if doc is None:
            if expected.state.value != "not_found":
                out[expected.username] = "document missing"
        elif (stored := orjson.loads(doc)).get("digest") != expected.digest:
            out[expected.username] = f"document says {_summary(stored)}, Postgres says {_summary(expected.model_dump(mode='json'))}"
        elif list(entries) != list(p.active_members):
            out[expected.username] = "active queue entries differ"
        elif any(score is None for score in scores):
            out[expected.username] = "active queue entry missing"
    return out


def _summary(doc: dict) -> str:  # type: ignore[type-arg]
    queue = doc.get("queue") or {}
    return f"{doc.get('state')}/{queue.get('status')}/{queue.get('priority')}/attempts={queue.get('attempts')}"


async def _check_usernames(store: StatusStore, conn: AsyncConnection, names: list[str]) -> dict[str, str]:
    async with conn.transaction():
        snap = await read_usernames_isolating(conn, names)
    return await _compare(store, snap.projections(datetime.now(UTC))) | _unprojectable(snap)


def _unprojectable(snap: Snapshot) -> dict[str, str]:
    return {name: f"its rows cannot be projected ({why})" for name, why in snap.failures.items()}


_ACTIVE_COUNTS = f"""
SELECT ({PRIORITY_RANK})::text
       OPERATOR(pg_catalog.||) (CASE WHEN status OPERATOR(pg_catalog.=) 'PENDING' THEN '{PENDING}' ELSE '{RUNNING}' END),
       pg_catalog.count(*)
FROM queue WHERE {ACTIVE} GROUP BY 1
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
            projections = snap.projections(datetime.now(UTC))
            suspects.update(await _compare(store, projections) | _unprojectable(snap))
            if progress:
                progress(len(snap.rows))
    await _queue_totals(store, conn, report)
    unknown: list[str] = []
    async for key, name in scans.documents(store):
        if name is None:
            report.differences[key.decode()] = "a key no username writes (an earlier layout's; a rebuild removes it)"
            continue
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
    report.quarantined = await store.quarantined()
    return report
