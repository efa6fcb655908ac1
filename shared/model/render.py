"""The status rules, part two: a document and the clock in, the API's `data` out. Pure.

Everything that moves with time or with other users' jobs is computed here, at
the moment of the response: durations, stage, progress, ETA, polling advice
and queue position. Each renderer's answer has its model in `shared.model.answers`
(ExistsStatus, QueuedStatus, NotFoundStatus), which the tests hold it to.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from shared.model.document import ProfileFacts, QueueFacts, State, StatusDocument
from shared.model.estimates import NO_ESTIMATES, Estimates
from shared.model.queue_entry import priority_rank
from shared.model.rules import QueuePosition

FRESH_FOR = timedelta(hours=24)
# `unchanged_until` for a rendering no clock can change.
NEVER = datetime.max.replace(tzinfo=UTC)
# profile_age_hours has two decimals: it moves every 36 s.
_AGE_STEP_S = 36.0
_MARGIN = timedelta(milliseconds=1)
MAX_ATTEMPTS = 3
MAX_BACKOFF_MINUTES = 30
AVERAGE_PROCESSING_S = 4 * 60
UNKNOWN_STATUS = "UNKNOWN"  # shown when a writer left `status` NULL

# (duration below which, stage, progress %) while PROCESSING.
_PROCESSING_STAGES = (
    (60.0, "initializing", 10),
    (120.0, "fetching_profile_data", 30),
    (180.0, "analyzing_content", 60),
    (240.0, "processing_insights", 80),
    (math.inf, "finalizing", 95),
)
STAGE_BOUNDARIES_S = tuple(b for b, _, _ in _PROCESSING_STAGES if b != math.inf)
_FIXED_STAGES = {"PENDING": ("queued", 0), "COMPLETED": ("completed", 100), "FAILED": ("failed", 0)}
_POLLING = {"PENDING": ("30 seconds", 30), "COMPLETED": ("stop", 0), "FAILED": ("stop", 0)}
# NOT_FOUND has no seed text (the seed's component then fails on `undefined.match`).
# 30 s, as PENDING: the name changes only when someone submits it, which the
# submitting frontend knows first; it is the component's own starting interval,
# and that component adds an interval on every answer without clearing the
# last, so a shorter advice would multiply its requests faster. The answer's
# max-age stays 5 s, so a client that asks sooner is not served a stale miss.
NOT_FOUND_POLLING = ("30 seconds", 30)
_NEXT_ACTION = {
    "COMPLETED": "view_profile",
    "PENDING": "wait_for_processing",
    "PROCESSING": "monitor_progress",
}
# Seed text for a PENDING job by queue position, with the seconds we report for it
# (the middle of a range, the lower bound of an open one).
_PENDING_ETA = ((1, "1-2 minutes", 90), (3, "3-8 minutes", 330), (10, "10-25 minutes", 1050))
_PENDING_ETA_BEYOND = ("25+ minutes", 1500)
_PENDING_ETA_UNKNOWN = ("5-15 minutes", 600)
_PROCESSING_ETA_UNKNOWN = ("2-4 minutes", 180)


def js_round(x: float) -> int:
    """Round half up, as the seed's `Math.round` does (Python rounds half to even)."""
    return math.floor(x + 0.5)


def iso(ts: datetime | None) -> str | None:
    """ISO 8601 with a UTC offset, as every timestamp in responses."""
    return _iso(ts) if ts is not None else None


@lru_cache(maxsize=65536)
def _iso(ts: datetime) -> str:
    # The same few timestamps are rendered on every poll of a document.
    return ts.astimezone(UTC).isoformat()


def processing_duration(status: str, last_attempt: datetime | None, now: datetime) -> float | None:
    """Seconds since `last_attempt` while PROCESSING; a future attempt counts as 0."""
    if status != "PROCESSING" or last_attempt is None:
        return None
    return max(0.0, (now - last_attempt).total_seconds())


def duration_field(duration: float | None) -> float | None:
    """`processing_duration_seconds` as sent: 2 decimals, and null where that is 0.

    The seed sends `round(d, 2) if d else None`, and its React component shows
    the field with `{d && ...}`, which renders a stray "0" for 0. A duration
    clamped to 0 (a `last_attempt` ahead of the clock) is therefore null; the
    stage and polling advice still read the duration as 0.
    """
    if duration is None:
        return None
    return round(duration, 2) or None


def stage_and_progress(status: str, duration: float | None) -> tuple[str, int]:
    """The seed's processing stage and `ProcessingStageTracker` percentage."""
    if status in _FIXED_STAGES:
        return _FIXED_STAGES[status]
    if status != "PROCESSING":
        return "unknown", 0
    if duration is None:
        return "starting", 5
    for below, stage, progress in _PROCESSING_STAGES:
        if duration < below:
            return stage, progress
    raise AssertionError("unreachable: the last stage has no upper bound")


def polling_interval(status: str, duration: float | None) -> tuple[str, int]:
    """The seed's recommended polling interval, as text and as seconds (0 = stop)."""
    if status in _POLLING:
        return _POLLING[status]
    if status == "PROCESSING":
        return ("15 seconds", 15) if duration is not None and duration < 60 else ("30 seconds", 30)
    return "60 seconds", 60


def _remaining_text(remaining: float) -> tuple[str, int]:
    """The seed's wording for a time left: seconds under a minute, else whole minutes."""
    if remaining < 60:
        return f"{js_round(remaining)} seconds", js_round(remaining)
    minutes = js_round(remaining / 60)
    return f"{minutes} minutes", minutes * 60


def estimated_time(
    status: str,
    position: int | None,
    duration: float | None,
    estimates: Estimates = NO_ESTIMATES,
    priority: str | None = None,
    waited: float | None = None,
) -> tuple[str, int | None]:
    """The seed's `calculateEstimatedTime` text, with the same estimate in seconds.

    Once the projector has measured enough jobs, its averages replace the seed's
    fixed figures: processing time for a running job; for a pending one, the
    average wait at its priority less the time waited so far, plus processing.
    """
    if status == "COMPLETED":
        return "complete", 0
    if status == "FAILED":
        return "failed - requires retry", None
    processing = estimates.processing.usable()
    if status == "PROCESSING":
        if duration is None:
            return _remaining_text(processing) if processing is not None else _PROCESSING_ETA_UNKNOWN
        return _remaining_text(max(0.0, (processing or AVERAGE_PROCESSING_S) - duration))
    if status == "PENDING":
        wait = estimates.waiting[priority_rank(priority)].usable()
        if wait is not None and processing is not None:
            return _remaining_text(max(0.0, wait - (waited or 0.0)) + processing)
        if position is None:
            return _PENDING_ETA_UNKNOWN
        for up_to, text, seconds in _PENDING_ETA:
            if position <= up_to:
                return text, seconds
        return _PENDING_ETA_BEYOND
    return "unknown", None


def retry_backoff_minutes(attempts: int) -> float:
    """Exponential backoff before the next retry: 2^attempts minutes, at most 30."""
    # The exponent is bounded first: 2.0**1024 overflows, and 2^5 already exceeds the cap.
    return min(2.0 ** min(attempts, 5), MAX_BACKOFF_MINUTES)


def is_retry_eligible(status: str, attempts: int) -> bool:
    """A FAILED job is retried while it has had fewer than three attempts."""
    return status == "FAILED" and attempts < MAX_ATTEMPTS


def next_action(status: str, retry_eligible: bool) -> str:
    """What the seed tells the user to do next."""
    if status == "FAILED":
        return "retry_processing" if retry_eligible else "contact_support"
    return _NEXT_ACTION.get(status, "check_system_status")


def render_exists(username: str, profile: ProfileFacts, now: datetime) -> dict[str, Any]:
    """`data` for a username with a `primary_profiles` row (`answers.ExistsStatus`)."""
    age_hours: float | None = None
    if profile.created_at is not None:
        age_hours = round(max(0.0, (now - profile.created_at).total_seconds()) / 3600, 2)
    fresh = profile.created_at is not None and now - profile.created_at < FRESH_FOR
    return {
        "completed": True,
        "status": "exists",
        "message": "Profile processing completed",
        "created_at": iso(profile.created_at),
        "last_scraped_at": iso(profile.last_scraped_at),
        "followers_count": profile.followers_count,
        "posts_count": profile.posts_count,
        "profile_age_hours": age_hours,
        "data_freshness": "fresh" if fresh else "standard",
        "availability": "ready",
        "next_action": "view_profile",
        "profile_url": f"/api/profile/{username}",
        "content_url": f"/api/profile/{username}/posts",
        # Not in the seed's answer (its component stops on `completed` first); sent so
        # that every answer carries polling advice: a profile is final.
        "recommended_polling_interval": "stop",
        "recommended_polling_seconds": 0,
    }


def render_queued(
    entry: QueueFacts, now: datetime, position: QueuePosition | None, estimates: Estimates = NO_ESTIMATES
) -> dict[str, Any]:
    """`data` for a username whose latest `queue` row answers (`answers.QueuedStatus`)."""
    status = entry.status if entry.status is not None else UNKNOWN_STATUS
    duration = processing_duration(status, entry.last_attempt, now)
    stage, progress = stage_and_progress(status, duration)
    active = entry.queue_member is not None and position is not None
    queue_position = position.ahead + 1 if active and position else None
    waited = (now - entry.timestamp).total_seconds() if entry.timestamp is not None else None
    eta_text, eta_seconds = estimated_time(status, queue_position, duration, estimates, entry.priority, waited)
    retry = is_retry_eligible(status, entry.attempts)
    next_retry = None
    if retry and entry.last_attempt is not None:
        next_retry = entry.last_attempt + timedelta(minutes=retry_backoff_minutes(entry.attempts))
    polling_text, polling_seconds = polling_interval(status, duration)
    return {
        "completed": False,
        "status": status,
        "message": f"Profile is {status.lower()}",
        "attempts": entry.attempts,
        "priority": entry.priority,
        "request_id": entry.request_id,
        "timestamp": iso(entry.timestamp),
        "last_attempt": iso(entry.last_attempt),
        "error_message": entry.error_message,
        "processing_duration_seconds": duration_field(duration),
        "processing_stage": stage,
        "progress_percentage": progress,
        "queue_position": queue_position,
        "ahead_count": position.ahead if active and position else None,
        "total_queue_size": position.total if active and position else None,
        "estimated_time_remaining": eta_text,
        "estimated_seconds_remaining": eta_seconds,
        "is_retry_eligible": retry,
        "next_retry_time": iso(next_retry),
        "recommended_polling_interval": polling_text,
        "recommended_polling_seconds": polling_seconds,
        "can_be_cancelled": status in ("PENDING", "PROCESSING"),
        "next_action": next_action(status, retry),
    }


def render_not_found(username: str) -> dict[str, Any]:
    """`data` for a username neither table knows (`answers.NotFoundStatus`)."""
    return {
        "completed": False,
        "status": "NOT_FOUND",
        "message": "Profile not found in queue or database",
        "recommendation": "Submit processing request first",
        "next_action": "request_processing",
        "suggested_endpoint": f"/api/profile/{username}/request",
        "recommended_polling_interval": NOT_FOUND_POLLING[0],
        "recommended_polling_seconds": NOT_FOUND_POLLING[1],
    }


def render(
    doc: StatusDocument,
    now: datetime,
    position: QueuePosition | None = None,
    estimates: Estimates = NO_ESTIMATES,
) -> dict[str, Any]:
    """The API's `data` for `doc` at `now`; `position` is needed for an active job."""
    if doc.state is State.EXISTS and doc.profile is not None:
        return render_exists(doc.username, doc.profile, now)
    if doc.state is State.QUEUED and doc.queue is not None:
        return render_queued(doc.queue, now, position, estimates)
    return render_not_found(doc.username)


def uses_estimates(doc: StatusDocument) -> bool:
    """Whether `render(doc, ...)` reads the estimates at all: only a pending or running job's
    time left does (`estimated_time`); every other answer renders alike whatever they are."""
    return doc.state is State.QUEUED and doc.queue is not None and doc.queue.status in ("PENDING", "PROCESSING")


def is_terminal(data: dict[str, Any]) -> bool:
    """No further change is expected without a new request: stop pushing and polling."""
    status = data["status"]
    return status in ("exists", "COMPLETED") or (status == "FAILED" and not data["is_retry_eligible"])


def next_clock_change(doc: StatusDocument, now: datetime) -> datetime | None:
    """When the clock alone next moves the stage or freshness of `doc` (None: never)."""
    if doc.state is State.EXISTS and doc.profile and doc.profile.created_at:
        turns_stale = doc.profile.created_at + FRESH_FOR
        return turns_stale if turns_stale > now else None
    entry = doc.queue
    if entry is None or entry.status != "PROCESSING" or entry.last_attempt is None:
        return None
    for boundary in STAGE_BOUNDARIES_S:
        at = entry.last_attempt + timedelta(seconds=boundary)
        if at > now:
            return at
    return None


def clock_moved_since(doc: StatusDocument, since: datetime, now: datetime) -> bool:
    """Whether the clock alone moved the stage or freshness of `doc` between `since` and `now`.

    A stream resumes a client that holds `doc`'s version with nothing new when
    this is False for `since` = the moment the version was projected: whenever
    the client received it, it rendered the same stage.
    """
    boundary = next_clock_change(doc, since)
    return boundary is not None and boundary <= now


def unchanged_until(doc: StatusDocument, now: datetime, estimates: Estimates = NO_ESTIMATES) -> datetime | None:
    """Until when `render(doc, t, position, estimates)` equals its value at `now`, for every later t.

    NEVER when no clock changes it, None when it may change at any moment
    (a running job's duration, or a pending job's measured wait). Lets the API
    reuse a rendered answer without rendering it again.
    """
    if doc.state is State.EXISTS and doc.profile is not None:
        created = doc.profile.created_at
        if created is None:
            return NEVER
        age = max(0.0, (now - created).total_seconds())
        # The rounded age next moves when it passes half a step; stop a little before.
        next_age = created + timedelta(seconds=(math.floor(age / _AGE_STEP_S + 0.5) + 0.5) * _AGE_STEP_S) - _MARGIN
        turns_stale = created + FRESH_FOR
        return min(next_age, turns_stale - _MARGIN) if turns_stale > now else next_age
    entry = doc.queue
    if doc.state is not State.QUEUED or entry is None:
        return NEVER
    if entry.status == "PROCESSING" and entry.last_attempt is not None:
        return None
    if entry.status == "PENDING":
        rank = priority_rank(entry.priority)
        if estimates.processing.usable() is not None and estimates.waiting[rank].usable() is not None:
            return None
    return NEVER


def duration_only_until(doc: StatusDocument, now: datetime, estimates: Estimates = NO_ESTIMATES) -> datetime | None:
    """For a running job: until when, in its rendering, only `processing_duration_seconds` moves.

    Its stage, polling advice and time left change at known moments (the stage
    boundaries, and when the rounded time left ticks); before the first of
    them, the answer is the one at `now` with the duration put in. None when
    `doc` is not a running job with a start time.
    """
    entry = doc.queue
    if doc.state is not State.QUEUED or entry is None or entry.status != "PROCESSING" or entry.last_attempt is None:
        return None
    until = next_clock_change(doc, now) or NEVER
    total = estimates.processing.usable() or AVERAGE_PROCESSING_S  # as estimated_time reads it
    remaining = max(0.0, total - max(0.0, (now - entry.last_attempt).total_seconds()))
    # The time left is shown rounded: in whole minutes from 60 s, in seconds below, 0 for good at the end.
    if remaining >= 60:
        ticks_below = max((js_round(remaining / 60) - 0.5) * 60, 60.0)
    else:
        ticks_below = js_round(remaining) - 0.5 if js_round(remaining) >= 1 else None
    if ticks_below is not None:
        until = min(until, entry.last_attempt + timedelta(seconds=total - ticks_below) - _MARGIN)
    return until
