"""The columns of `queue` and `primary_profiles` that the status depends on, as plain values."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

# The column lists the readers select, in the order of the dataclass fields below.
QUEUE_COLUMNS = (
    "id, username, status, priority, timestamp, last_attempt, attempts, "
    "error_message, request_id, created_at"
)
PROFILE_COLUMNS = (
    "id, username, created_at, updated_at, last_scraped_at, followers_count, posts_count"
)


@dataclass(frozen=True, slots=True)
class QueueRow:
    """One row of `queue`; any column the writers may leave NULL is optional."""

    id: UUID
    username: str
    status: str | None
    priority: str | None
    timestamp: datetime | None
    last_attempt: datetime | None
    attempts: int | None
    error_message: str | None
    request_id: str | None
    created_at: datetime | None


@dataclass(frozen=True, slots=True)
class ProfileRow:
    """One row of `primary_profiles`, reduced to what the status shows."""

    id: UUID
    username: str
    created_at: datetime | None
    updated_at: datetime | None
    last_scraped_at: datetime | None
    followers_count: int | None
    posts_count: int | None
