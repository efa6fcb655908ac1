"""Measuring real processing and waiting times from the transitions the projector applies.

The write script reports each document's previous status, so a PENDING ->
PROCESSING or PROCESSING -> done transition is seen exactly once, when it is
applied; replays and rebuilds find the document already there and report none.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from shared.model.document import State
from shared.model.estimates import Estimates
from shared.model.queue_entry import priority_rank
from shared.model.rules import Projection, latest_queue_row
from shared.postgres.snapshots import Snapshot
from shared.redis_store import reports
from shared.redis_store.store import WAS_PENDING, WAS_PROCESSING, WRITTEN, StatusStore

# Samples outside these bounds are clock trouble or abandoned jobs, not durations.
MAX_PROCESSING_S = 6 * 3600
MAX_WAIT_S = 7 * 24 * 3600


class Measurements:
    """Keeps the moving averages and the completions-per-minute counters."""

    def __init__(self, estimates: Estimates | None = None) -> None:
        self.estimates = estimates or Estimates()
        self.changed = False

    @classmethod
    async def load(cls, store: StatusStore) -> Measurements:
        """Continue from the averages a previous projector left in Redis."""
        return cls(await reports.estimates(store))

    def observe(self, snap: Snapshot, projections: Sequence[Projection], codes: Sequence[int], now: datetime) -> int:
        """Fold in the transitions of one applied batch; returns how many jobs completed."""
        completed = 0
        for rows, projection, code in zip(snap.rows.values(), projections, codes, strict=True):
            if code % 10 != WRITTEN:
                continue
            previous, doc = code // 10, projection.document
            latest = latest_queue_row(rows.queue)
            status = doc.queue.status if doc.queue is not None else None
            if previous == WAS_PROCESSING and (doc.state is State.EXISTS or status == "COMPLETED"):
                completed += 1
                if latest is not None and latest.last_attempt is not None:
                    took = (now - latest.last_attempt).total_seconds()
                    if 0 < took < MAX_PROCESSING_S:
                        self.estimates.processing.add(took)
                        self.changed = True
            elif previous == WAS_PENDING and status == "PROCESSING" and latest is not None:
                if latest.last_attempt is not None and latest.timestamp is not None:
                    waited = (latest.last_attempt - latest.timestamp).total_seconds()
                    if 0 <= waited < MAX_WAIT_S:
                        self.estimates.waiting[priority_rank(latest.priority)].add(waited)
                        self.changed = True
        return completed

    async def record_completions(self, store: StatusStore, count: int) -> None:
        """Count completions in this minute's bucket (read by the queue overview)."""
        await reports.count_completions(store, count)

    async def save(self, store: StatusStore) -> None:
        """Publish the averages for the API, when they moved."""
        if self.changed:
            await reports.save_estimates(store, self.estimates)
            self.changed = False
