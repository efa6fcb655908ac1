"""The columns of `queue` and `primary_profiles` that the status depends on, as plain values."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from shared.model.instants import Instant


@dataclass(frozen=True, slots=True)
class QueueRow:
    """One row of `queue`; any column the writers may leave NULL is optional, and times may be out of `datetime`'s range."""

    id: UUID
    username: str
    status: str | None
    priority: str | None
    timestamp: Instant | None
    last_attempt: Instant | None
    attempts: int | None
    error_message: str | None
    request_id: str | None
    created_at: Instant | None


@dataclass(frozen=True, slots=True)
class ProfileRow:
    """One row of `primary_profiles`, reduced to what the status shows."""

    id: UUID
    username: str
    created_at: Instant | None
    updated_at: Instant | None
    last_scraped_at: Instant | None
    followers_count: int | None
    posts_count: int | None
