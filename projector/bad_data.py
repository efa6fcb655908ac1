"""Bad data is data: values a document cannot show are logged once and counted; rows that still fail are quarantined.

A time no document can carry (`infinity`, a BC date, the year 10000) renders
as null: the projector says so once per row and column, not on every
re-projection. A username whose rows cannot be read or projected at all costs
only itself: it goes to a quarantine in Redis (`status:@quarantine`, listed by
`verify`, counted in a metric) and is tried again with its next change, or the
next rebuild, instead of holding up its batch.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable, Sequence

from redis.exceptions import ResponseError

from projector import metrics
from shared.errors import one_line
from shared.model.rules import Projection
from shared.postgres.snapshots import Snapshot
from shared.redis_store.store import StatusStore, WriteOutcome

log = logging.getLogger(__name__)
# Remembered (row id, column) pairs already reported; beyond this, the oldest are forgotten.
MAX_REMEMBERED = 100_000


class BadData:
    """What this process has reported, and the quarantine it keeps in Redis."""

    def __init__(self, store: StatusStore) -> None:
        self.store = store
        self._reported: OrderedDict[tuple[str, str], None] = OrderedDict()
        self.quarantined: set[str] = set()

    async def load(self) -> None:
        """Learn who is in quarantine (after a restart, so that their recovery releases them)."""
        self.quarantined = set(await self.store.quarantined())
        metrics.QUARANTINED.set(len(self.quarantined))

    def note(self, snap: Snapshot) -> None:
        """Report the times of `snap` no document can show, each (row, column) once."""
        for table, row_id, column, value in snap.degraded_values():
            key = (row_id, column)
            if key in self._reported:
                continue
            self._reported[key] = None
            if len(self._reported) > MAX_REMEMBERED:
                self._reported.popitem(last=False)
            metrics.DEGRADED_VALUES.labels(table, column).inc()
            log.warning(
                "%s row %s: %s %r cannot be shown; it renders as null", table, row_id, column, value,
                extra={"event": "degraded_value", "table": table, "row_id": row_id, "column": column, "value": value},
            )

    async def quarantine(self, failures: dict[str, str]) -> None:
        """Put usernames whose rows failed into quarantine, saying why (once per username)."""
        if not failures:
            return
        await self.store.quarantine(failures)
        for name, why in failures.items():
            if name not in self.quarantined:
                metrics.QUARANTINE_EVENTS.inc()
                log.error(
                    "username %r quarantined: %s", name, why,
                    extra={"event": "quarantined", "username": name, "reason": why},
                )
        self.quarantined.update(failures)
        metrics.QUARANTINED.set(len(self.quarantined))

    async def recovered(self, usernames: Iterable[str]) -> None:
        """Release the quarantined among usernames that just projected."""
        back: Sequence[str] = [n for n in usernames if n in self.quarantined] if self.quarantined else []
        if not back:
            return
        await self.store.release(back)
        self.quarantined.difference_update(back)
        metrics.QUARANTINED.set(len(self.quarantined))
        for name in back:
            log.info("username %r left quarantine", name, extra={"event": "quarantine_released", "username": name})


async def write_isolating(store: StatusStore, projections: Sequence[Projection], failures: dict[str, str]) -> WriteOutcome:
    """`store.write`, halving the batch around a username Redis refuses: the others are written,
    and the refused one is added to `failures`. Codes stay aligned with `projections` (0 for a refused one).

    Only a script's own error is isolated so; Redis not ready (LOADING, READONLY, OOM, ...)
    is an outage and is raised.
    """
    try:
        return await store.write(projections)
    except (ResponseError, TypeError, ValueError) as exc:
        if isinstance(exc, ResponseError) and type(exc) is not ResponseError:
            raise
        # A failed script may have written part of its batch without announcing it.
        await store.skip_seqs()
        if len(projections) == 1:
            failures[projections[0].document.username] = f"cannot write: {one_line(exc)}"
            return WriteOutcome(codes=(0,))
        half = len(projections) // 2
        first = await write_isolating(store, projections[:half], failures)
        second = await write_isolating(store, projections[half:], failures)
        return WriteOutcome(
            written=first.written + second.written,
            unchanged=first.unchanged + second.unchanged,
            stale=first.stale + second.stale,
            codes=first.codes + second.codes,
            seqs={s: max(first.seqs.get(s, 0), second.seqs.get(s, 0)) for s in first.seqs | second.seqs},
        )
