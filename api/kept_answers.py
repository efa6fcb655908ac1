"""Rendered answers kept per username, served again while what rendered them stands.

An answer rendered from a Redis reading (or the process cache's copy of one)
is what rendering would give again as long as the reading has the same
document, the same position, the same estimates, and the clock has not reached
the moment the answer would change (`shared.model.render.unchanged_until`; for
a running job, all but its duration: `duration_only_until`). Only pending and
running jobs' answers read the estimates (`shared.model.render.uses_estimates`):
the others stand whatever the projector measures. `StatusReader`
and the process cache hand out the same document object until its stored
bytes change, so "the same document" is an identity check. Every poll still
reads (from Redis, or from the cache the change messages keep exact); only
the rendering is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from shared.model.document import StatusDocument
from shared.model.estimates import Estimates
from shared.model.render import uses_estimates
from shared.model.rules import QueuePosition
from shared.redis_store.reader import Reading

A = TypeVar("A")
KEPT = 50_000


@dataclass(frozen=True, slots=True)
class _Kept(Generic[A]):
    document: StatusDocument
    position: QueuePosition | None
    estimates: Estimates | None  # None: the answer does not depend on them
    until: datetime
    answer: A


class KeptAnswers(Generic[A]):
    """The last answer rendered for each username (at most `kept`, the oldest dropped first)."""

    def __init__(self, kept: int = KEPT) -> None:
        self.kept = kept
        self._answers: dict[str, _Kept[A]] = {}

    def get(self, username: str, reading: Reading, now: datetime, estimates: Estimates) -> A | None:
        """The answer kept for `username`, if `reading` and `estimates` at `now` render it again."""
        kept = self._answers.get(username)
        if (
            kept is None
            or kept.document is not reading.document
            or (kept.estimates is not None and kept.estimates is not estimates)
            or kept.position != reading.position
            or now >= kept.until
        ):
            return None
        return kept.answer

    def keep(self, username: str, reading: Reading, answer: A, until: datetime | None, estimates: Estimates) -> None:
        """Keep `answer`, rendered from `reading` with `estimates`, until `until` (None: not at all)."""
        if until is None or reading.document is None:
            self._answers.pop(username, None)
            return
        if username not in self._answers and len(self._answers) >= self.kept:
            self._answers.pop(next(iter(self._answers)))
        depends = estimates if uses_estimates(reading.document) else None
        self._answers[username] = _Kept(reading.document, reading.position, depends, until, answer)
