"""The JSON answers of the API, one model each: the source of /openapi.json and of docs/api.md's field lists.

They sit in the model beside the renderers (`shared.model.render`) that build
the status answers, so a new field is added to the renderer and its answer in
one package; tests hold every rendered answer to its model.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


_POLLING_TEXT = (
    'The seed\'s advice: "N seconds" (or minutes), or "stop"; every answer carries it, '
    "as the seed's React component parses it from every 200"
)
_POLLING_SECONDS = "recommended_polling_interval in seconds; 0 for stop"


class ExistsStatus(_Body):
    """The username has a `primary_profiles` row: processing is complete."""

    completed: Literal[True]
    status: Literal["exists"]
    message: str
    created_at: datetime | None
    last_scraped_at: datetime | None
    followers_count: int | None
    posts_count: int | None
    profile_age_hours: float | None = Field(description="Hours since created_at, 2 decimals, at the response")
    data_freshness: Literal["fresh", "standard"]
    availability: Literal["ready"]
    next_action: Literal["view_profile"]
    profile_url: str
    content_url: str
    recommended_polling_interval: Literal["stop"] = Field(description=_POLLING_TEXT)
    recommended_polling_seconds: Literal[0] = Field(description=_POLLING_SECONDS)


class QueuedStatus(_Body):
    """The username's most recent queue row answers."""

    completed: Literal[False]
    status: str = Field(description="PENDING, PROCESSING, COMPLETED, FAILED, or the row's own text")
    message: str
    attempts: int
    priority: str | None
    request_id: str | None
    timestamp: datetime | None
    last_attempt: datetime | None
    error_message: str | None
    processing_duration_seconds: float | None
    processing_stage: str
    progress_percentage: int
    queue_position: int | None = Field(description="1 + active rows ahead; PENDING/PROCESSING only")
    ahead_count: int | None
    total_queue_size: int | None
    estimated_time_remaining: str
    estimated_seconds_remaining: int | None
    is_retry_eligible: bool
    next_retry_time: datetime | None
    recommended_polling_interval: str = Field(description=_POLLING_TEXT)
    recommended_polling_seconds: int = Field(description=_POLLING_SECONDS)
    can_be_cancelled: bool
    next_action: str


class NotFoundStatus(_Body):
    """Neither table knows the username."""

    completed: Literal[False]
    status: Literal["NOT_FOUND"]
    message: str
    recommendation: str
    next_action: Literal["request_processing"]
    suggested_endpoint: str
    recommended_polling_interval: Literal["30 seconds"] = Field(description=_POLLING_TEXT)
    recommended_polling_seconds: Literal[30] = Field(description=_POLLING_SECONDS)


class StatusResponse(_Body):
    """200: the status of a username."""

    success: Literal[True]
    data: ExistsStatus | QueuedStatus | NotFoundStatus


class StreamStatusEvent(_Body):
    """`data` of a `status` event of `GET /api/status/stream`: the GET's body and whose it is."""

    username: str = Field(description="The normalized username this answer is for")
    success: Literal[True]
    data: ExistsStatus | QueuedStatus | NotFoundStatus


class ErrorResponse(_Body):
    """400, 404, 500: what went wrong, in one line."""

    success: Literal[False]
    detail: str


class UnavailableData(_Body):
    """What a polling client should do while a dependency is down."""

    completed: Literal[False]
    status: Literal["ERROR"]
    message: str
    error_type: str
    retry_recommended: Literal[True]
    retry_delay: str
    next_action: Literal["retry_status_check"]
    recommended_polling_interval: str = Field(description="As retry_delay, in the status answers' words")
    recommended_polling_seconds: int = Field(description="The Retry-After header's seconds")


class UnavailableResponse(_Body):
    """503: retry after the `Retry-After` header's seconds."""

    success: Literal[False]
    detail: str
    data: UnavailableData


class ProjectorHealth(_Body):
    """The projector as seen through its heartbeat."""

    heartbeat_age_seconds: float | None
    backlog: int | None
    backlog_age_seconds: float | None


class QueueOverview(_Body):
    """Active jobs at a glance."""

    total_active: int
    by_priority: dict[str, dict[str, int]]
    by_status: dict[str, int]
    oldest_pending_age_seconds: float | None
    completions_per_minute: float
    projector: ProjectorHealth
    generated_at: datetime


class QueueStatusResponse(_Body):
    """200: the queue overview."""

    success: Literal[True]
    data: QueueOverview


class RecentUsernames(_Body):
    """Usernames whose status changed most recently, newest first."""

    usernames: list[str]


class RecentResponse(_Body):
    """200: recently changed usernames."""

    success: Literal[True]
    data: RecentUsernames


class ProjectorState(BaseModel):
    """The projector as its last heartbeat described itself."""

    backlog: int
    backlog_age_s: float
    rebuilding: bool


class Readiness(BaseModel):
    """/readyz: whether this process can serve (Redis answers), and how the projector is doing."""

    ready: bool
    # The projector's heartbeat is missing or older than PROFILE_STATUS_HEARTBEAT_MAX_AGE_S (reported, not enforced).
    degraded: bool | None = None
    reason: str | None = None
    heartbeat_age_s: float | None = None
    projector: ProjectorState | None = None
    projection_complete: bool | None = None
