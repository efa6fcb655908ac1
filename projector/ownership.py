"""Which projector applies which changes: partitions of usernames, each held by a session advisory lock.

With one partition (the default) exactly one projector is active and the others
stand by, blocked on the lock, and take over the moment the active session
ends. With N partitions (by a hash of the username) several projectors share
the work: each holds at most its fair share, ceil(N / projectors running), and
gives back extras when a projector joins, so partitions rebalance by
themselves. A username always maps to one partition, so its changes stay in order.

A frozen or cut-off projector cannot hold a lock for long: its session has an
`idle_session_timeout`, and an active projector queries at least every heartbeat.
"""

from __future__ import annotations

import logging
import math

import psycopg
from psycopg import AsyncConnection

log = logging.getLogger(__name__)

ADVISORY_LOCK_BASE = 0x70726F66696C65  # "profile" in ASCII; partition p uses base + p
APPLICATION_NAME = "profile-status-projector"
IDLE_SESSION_TIMEOUT_MS = 5000
WAIT_SLICE_MS = 1000


class Ownership:
    """The partitions this process holds on its work connection (which must be in autocommit)."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.owned: set[int] = set()

    @property
    def leads(self) -> bool:
        """The holder of partition 0 also rebuilds, follows TRUNCATEs and writes the main heartbeat."""
        return 0 in self.owned

    def filter(self) -> list[int] | None:
        """The partitions to apply changes of; None when this process holds them all."""
        return None if len(self.owned) == self.partitions else sorted(self.owned)

    async def prepare(self, conn: AsyncConnection) -> None:
        """Bound how long a frozen holder keeps its locks (PostgreSQL 14 and later)."""
        if conn.info.server_version >= 140000:
            await conn.execute(f"SET idle_session_timeout = {IDLE_SESSION_TIMEOUT_MS}")
        # A holder frozen inside a transaction is "idle in transaction", which the above does not cover.
        await conn.execute(f"SET idle_in_transaction_session_timeout = {IDLE_SESSION_TIMEOUT_MS}")

    async def acquire(self, conn: AsyncConnection) -> bool:
        """Take what is free, up to a fair share; with one partition, wait up to a second for it."""
        if self.partitions == 1:
            await conn.execute(f"SET lock_timeout = {WAIT_SLICE_MS}")
            try:
                await conn.execute("SELECT pg_catalog.pg_advisory_lock(%s::int8)", (ADVISORY_LOCK_BASE,))
                self.owned = {0}
            except psycopg.errors.LockNotAvailable:
                pass
            finally:
                await conn.execute("SET lock_timeout = 0")
            return bool(self.owned)
        await self.rebalance(conn)
        return bool(self.owned)

    async def rebalance(self, conn: AsyncConnection) -> bool:
        """Give back partitions beyond the fair share, take free ones below it. True if anything moved."""
        if self.partitions == 1:
            return False
        fair = math.ceil(self.partitions / max(1, await self._projectors(conn)))
        moved = False
        for p in sorted(self.owned, reverse=True):
            if len(self.owned) <= fair:
                break
            await conn.execute("SELECT pg_catalog.pg_advisory_unlock(%s::int8)", (ADVISORY_LOCK_BASE + p,))
            self.owned.discard(p)
            moved = True
        for p in range(self.partitions):
            if len(self.owned) >= fair:
                break
            if p in self.owned:
                continue
            cur = await conn.execute("SELECT pg_catalog.pg_try_advisory_lock(%s::int8)", (ADVISORY_LOCK_BASE + p,))
            row = await cur.fetchone()
            if row and row[0]:
                self.owned.add(p)
                moved = True
        if moved:
            log.info(
                "partitions now held: %s", sorted(self.owned),
                extra={"event": "partitions_rebalanced", "owned": sorted(self.owned), "fair_share": fair},
            )
        return moved

    async def _projectors(self, conn: AsyncConnection) -> int:
        cur = await conn.execute(
            "SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_activity"
            " WHERE application_name OPERATOR(pg_catalog.=) %s::text"
            " AND datname OPERATOR(pg_catalog.=) pg_catalog.current_database()",
            (APPLICATION_NAME,),
        )
        row = await cur.fetchone()
        return int(row[0]) if row else 1
