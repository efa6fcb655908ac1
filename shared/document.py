"""The status document stored in Redis: clock-independent facts, rendered per request.

A document holds what Postgres said at one snapshot (`version`); everything that
depends on the clock or on other users' jobs (durations, stage, ETA, queue
position) is computed when it is read, by `shared.render`.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict

SCHEMA_VERSION = 1


class State(StrEnum):
    """Which of the contract's three branches answers for a username."""

    EXISTS = "exists"
    QUEUED = "queued"
    NOT_FOUND = "not_found"


class ProfileFacts(BaseModel):
    """The answering `primary_profiles` row (the most recently updated one)."""

    model_config = ConfigDict(frozen=True)

    created_at: datetime | None
    last_scraped_at: datetime | None
    followers_count: int | None
    posts_count: int | None


class QueueFacts(BaseModel):
    """The username's most recent `queue` row."""

    model_config = ConfigDict(frozen=True)

    id: str
    status: str | None
    priority: str | None
    attempts: int
    request_id: str | None
    timestamp: datetime | None
    last_attempt: datetime | None
    error_message: str | None
    # Member of the active-queue sorted set while PENDING/PROCESSING, else None;
    # its rank there is the number of active rows ahead.
    queue_member: str | None


class StatusDocument(BaseModel):
    """The value of Redis key `status:{username}` (JSON). See `shared/schema/status-document.json`."""

    model_config = ConfigDict(frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    username: str
    # Orders documents by the Postgres snapshot they were read from; Redis keeps only newer ones.
    version: int
    projected_at: datetime
    # Hash of the facts below: equal digests mean an identical status.
    digest: str
    state: State
    profile: ProfileFacts | None = None
    queue: QueueFacts | None = None
