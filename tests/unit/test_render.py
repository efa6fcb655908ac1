"""Rendering a status document at the moment of the response, as docs/api.md describes it,
and the seed spec's response examples and helpers (`ProcessingStageTracker`,
`calculateEstimatedTime`, `determineProcessingStage`, `calculateNextRetryTime`,
`getRecommendedPollingInterval`, `determineNextAction`). Where they disagree the
contract wins. Every test renders at a fixed `now`.
"""

from __future__ import annotations

import json
import random
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import pytest

from shared.model.document import StatusDocument
from shared.model.render import (
    clock_moved_since,
    duration_field,
    estimated_time,
    is_retry_eligible,
    is_terminal,
    js_round,
    next_action,
    next_clock_change,
    polling_interval,
    render,
    retry_backoff_minutes,
    stage_and_progress,
)
from shared.model.rows import ProfileRow, QueueRow
from shared.model.rules import QueuePosition, active_members, position_among, project

NOW = datetime(2024, 1, 15, 14, 30, 0, tzinfo=UTC)
IST = timezone(timedelta(hours=5, minutes=30))
PST = timezone(timedelta(hours=-8))
USER = "entrepreneur_mike"

QUEUE_FIELDS = {
    "completed",
    "status",
    "message",
    "attempts",
    "priority",
    "request_id",
    "timestamp",
    "last_attempt",
    "error_message",
    "processing_duration_seconds",
    "processing_stage",
    "progress_percentage",
    "queue_position",
    "ahead_count",
    "total_queue_size",
    "estimated_time_remaining",
    "estimated_seconds_remaining",
    "is_retry_eligible",
    "next_retry_time",
    "recommended_polling_interval",
    "recommended_polling_seconds",
    "can_be_cancelled",
    "next_action",
}
EXISTS_FIELDS = {
    "completed",
    "status",
    "message",
    "created_at",
    "last_scraped_at",
    "followers_count",
    "posts_count",
    "profile_age_hours",
    "data_freshness",
    "availability",
    "next_action",
    "profile_url",
    "content_url",
}
NOT_FOUND_FIELDS = {
    "completed",
    "status",
    "message",
    "recommendation",
    "next_action",
    "suggested_endpoint",
    # Not in the contract's list: the seed's React component needs them on every answer (issue 16).
    "recommended_polling_interval",
    "recommended_polling_seconds",
}


# --------------------------------------------------------------------------- builders


def at(hh: int, mm: int, ss: float = 0.0) -> datetime:
    whole = int(ss)
    micro = round((ss - whole) * 1_000_000)
    return datetime(2024, 1, 15, hh, mm, whole, micro, tzinfo=UTC)


def qrow(
    n: int = 1,
    *,
    username: str = USER,
    status: str | None = "PENDING",
    priority: str | None = "HIGH",
    timestamp: datetime | None = None,
    last_attempt: datetime | None = None,
    attempts: int | None = 0,
    error_message: str | None = None,
    request_id: str | None = None,
    created_at: datetime | None = None,
) -> QueueRow:
    ts = timestamp if timestamp is not None else NOW - timedelta(minutes=10)
    return QueueRow(
        id=UUID(int=n),
        username=username,
        status=status,
        priority=priority,
        timestamp=ts,
        last_attempt=last_attempt,
        attempts=attempts,
        error_message=error_message,
        request_id=request_id if request_id is not None else f"req-{n}",
        created_at=created_at if created_at is not None else ts,
    )


def prow(
    *,
    username: str = USER,
    created_at: datetime | None,
    last_scraped_at: datetime | None = None,
    followers_count: int | None = 1000,
    posts_count: int | None = 10,
) -> ProfileRow:
    return ProfileRow(
        id=UUID(int=1),
        username=username,
        created_at=created_at,
        updated_at=created_at,
        last_scraped_at=last_scraped_at,
        followers_count=followers_count,
        posts_count=posts_count,
    )


def project_doc(
    username: str = USER,
    profiles: list[ProfileRow] | None = None,
    rows: list[QueueRow] | None = None,
    projected_at: datetime = NOW,
) -> StatusDocument:
    return project(username, profiles or [], rows or [], version=1, projected_at=projected_at)


def render_scenario(
    mine: list[QueueRow],
    others: list[QueueRow] | None = None,
    now: datetime = NOW,
    username: str = USER,
) -> dict[str, Any]:
    """Project `mine`, then render with the position among every active row (mine and others)."""
    doc = project_doc(username, rows=mine)
    position = None
    if doc.queue is not None and doc.queue.queue_member is not None:
        position = position_among(doc.queue.queue_member, active_members(mine + (others or [])))
    return render(doc, now, position)


def render_one(now: datetime = NOW, position: QueuePosition | None = None, **row: Any) -> dict[str, Any]:
    doc = project_doc(rows=[qrow(1, **row)])
    if position is None and doc.queue is not None and doc.queue.queue_member is not None:
        position = QueuePosition(ahead=0, total=1)
    return render(doc, now, position)


def render_profile(now: datetime = NOW, **row: Any) -> dict[str, Any]:
    return render(project_doc(profiles=[prow(**row)]), now)


def assert_utc_iso(value: object, expected: datetime) -> None:
    """ISO 8601 with a UTC offset (`Z` or `+00:00`), naming the expected instant."""
    assert isinstance(value, str), value
    assert value.endswith("Z") or value.endswith("+00:00"), value
    assert "T" in value, value
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert parsed.utcoffset() == timedelta(0), value
    assert parsed == expected, value


def is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


# --------------------------------------------------------------------------- the seed's response examples


def test_seed_example_completed() -> None:
    created = datetime(2024, 1, 15, 14, 30, tzinfo=UTC)
    scraped = datetime(2024, 1, 15, 14, 35, tzinfo=UTC)
    doc = project_doc(
        USER,
        profiles=[
            prow(
                username="Entrepreneur_Mike",
                created_at=created,
                last_scraped_at=scraped,
                followers_count=125000,
                posts_count=847,
            )
        ],
        rows=[qrow(1, status="FAILED", attempts=3)],  # the profile row wins over any queue row
    )
    data = render(doc, datetime(2024, 1, 15, 17, 0, tzinfo=UTC))
    assert EXISTS_FIELDS <= data.keys()
    assert data["completed"] is True
    assert data["status"] == "exists"
    assert data["message"] == "Profile processing completed"
    assert_utc_iso(data["created_at"], created)
    assert_utc_iso(data["last_scraped_at"], scraped)
    assert data["followers_count"] == 125000
    assert data["posts_count"] == 847
    assert data["profile_age_hours"] == 2.5
    assert data["data_freshness"] == "fresh"
    assert data["availability"] == "ready"
    assert data["next_action"] == "view_profile"
    assert data["profile_url"] == "/api/profile/entrepreneur_mike"
    assert data["content_url"] == "/api/profile/entrepreneur_mike/posts"
    json.dumps(data)


def test_seed_example_processing() -> None:
    mine = [
        qrow(
            1,
            status="PROCESSING",
            priority="HIGH",
            attempts=1,
            request_id="a7b3c9d2",
            timestamp=at(14, 28),
            last_attempt=at(14, 29),
        )
    ]
    others = [
        qrow(2, username="done", status="COMPLETED", timestamp=at(14, 0)),
        qrow(3, username="broke", status="FAILED", timestamp=at(14, 1)),
    ]
    data = render_scenario(mine, others, now=at(14, 31, 5.4))
    assert QUEUE_FIELDS <= data.keys()
    assert data["completed"] is False
    assert data["status"] == "PROCESSING"
    assert data["message"] == "Profile is processing"
    assert data["attempts"] == 1
    assert data["priority"] == "HIGH"
    assert data["request_id"] == "a7b3c9d2"
    assert_utc_iso(data["timestamp"], at(14, 28))
    assert_utc_iso(data["last_attempt"], at(14, 29))
    assert data["error_message"] is None
    assert data["processing_duration_seconds"] == 125.4
    assert data["processing_stage"] == "analyzing_content"
    assert data["progress_percentage"] == 60
    assert data["queue_position"] == 1
    assert data["ahead_count"] == 0
    assert data["total_queue_size"] == 1
    assert data["estimated_time_remaining"] == "2 minutes"
    assert is_number(data["estimated_seconds_remaining"])
    assert abs(data["estimated_seconds_remaining"] - (240 - 125.4)) <= 30
    assert data["is_retry_eligible"] is False
    assert data["next_retry_time"] is None
    assert data["recommended_polling_interval"] == "30 seconds"
    assert data["recommended_polling_seconds"] == 30
    assert data["can_be_cancelled"] is True
    assert data["next_action"] == "monitor_progress"
    json.dumps(data)


def test_seed_example_pending_at_position_3() -> None:
    mine = [
        qrow(1, status="PENDING", priority="HIGH", request_id="f4e8a1b6", timestamp=at(14, 25)),
    ]
    others = [
        qrow(2, username="bob", status="PENDING", priority="HIGH", timestamp=at(14, 20)),  # ahead
        qrow(3, username="carol", status="PROCESSING", priority="HIGH", timestamp=at(14, 24)),  # ahead
        qrow(4, username="dave", status="PENDING", priority="MEDIUM", timestamp=at(14, 0)),  # behind
        qrow(5, username="erin", status="PENDING", priority="LOW", timestamp=at(13, 0)),  # behind
        qrow(6, username="finn", status="COMPLETED", priority="HIGH", timestamp=at(14, 0)),  # not active
        qrow(7, username="gail", status="FAILED", priority="HIGH", timestamp=at(14, 0)),  # not active
    ]
    data = render_scenario(mine, others, now=at(14, 30))
    assert QUEUE_FIELDS <= data.keys()
    assert data["completed"] is False
    assert data["status"] == "PENDING"
    assert data["message"] == "Profile is pending"
    assert data["attempts"] == 0
    assert data["priority"] == "HIGH"
    assert data["request_id"] == "f4e8a1b6"
    assert_utc_iso(data["timestamp"], at(14, 25))
    assert data["last_attempt"] is None
    assert data["error_message"] is None
    assert data["processing_duration_seconds"] is None
    assert data["processing_stage"] == "queued"
    assert data["progress_percentage"] == 0
    assert data["queue_position"] == 3
    assert data["ahead_count"] == 2
    assert data["total_queue_size"] == 5
    # The contract names `calculateEstimatedTime` (position <= 3 -> '3-8 minutes'); the
    # example's '5-8 minutes' contradicts the seed's own function.
    assert data["estimated_time_remaining"] == "3-8 minutes"
    assert data["estimated_seconds_remaining"] is None or (
        is_number(data["estimated_seconds_remaining"]) and data["estimated_seconds_remaining"] > 0
    )
    assert data["is_retry_eligible"] is False
    assert data["next_retry_time"] is None
    assert data["recommended_polling_interval"] == "30 seconds"
    assert data["recommended_polling_seconds"] == 30
    assert data["can_be_cancelled"] is True
    assert data["next_action"] == "wait_for_processing"
    json.dumps(data)


def test_seed_example_failed() -> None:
    mine = [
        qrow(
            1,
            status="FAILED",
            priority="HIGH",
            attempts=2,
            request_id="c2d8e5f1",
            timestamp=at(14, 20),
            last_attempt=at(14, 22),
            error_message="Instagram profile not accessible - may be private",
        )
    ]
    others = [qrow(2, username="bob", status="PENDING", timestamp=at(14, 0))]
    data = render_scenario(mine, others, now=at(14, 30))
    assert QUEUE_FIELDS <= data.keys()
    assert data["completed"] is False
    assert data["status"] == "FAILED"
    assert data["message"] == "Profile is failed"
    assert data["attempts"] == 2
    assert data["priority"] == "HIGH"
    assert data["request_id"] == "c2d8e5f1"
    assert_utc_iso(data["timestamp"], at(14, 20))
    assert_utc_iso(data["last_attempt"], at(14, 22))
    assert data["error_message"] == "Instagram profile not accessible - may be private"
    assert data["processing_duration_seconds"] is None
    assert data["processing_stage"] == "failed"
    assert data["progress_percentage"] == 0
    assert data["queue_position"] is None
    assert data["ahead_count"] is None
    assert data["total_queue_size"] is None
    assert data["estimated_time_remaining"] == "failed - requires retry"
    assert data["estimated_seconds_remaining"] is None
    assert data["is_retry_eligible"] is True
    assert_utc_iso(data["next_retry_time"], at(14, 26))
    assert data["recommended_polling_interval"] == "stop"
    assert data["recommended_polling_seconds"] == 0
    assert data["can_be_cancelled"] is False
    assert data["next_action"] == "retry_processing"
    json.dumps(data)


def test_seed_example_not_found() -> None:
    data = render(project_doc(USER), NOW)
    assert data == {
        "completed": False,
        "status": "NOT_FOUND",
        "message": "Profile not found in queue or database",
        "recommendation": "Submit processing request first",
        "next_action": "request_processing",
        "suggested_endpoint": "/api/profile/entrepreneur_mike/request",
        "recommended_polling_interval": "30 seconds",
        "recommended_polling_seconds": 30,
    }
    assert NOT_FOUND_FIELDS == data.keys()


# --------------------------------------------------------------------------- what the seed's React component parses

# `ProfileStatusTracker.parsePollingInterval` in the seed spec, and its check for "stop".
_SEED_INTERVAL = re.compile(r"(\d+)\s*(seconds?|minutes?)")


def _seed_component_seconds(interval: str) -> int:
    """What the seed's component makes of `recommended_polling_interval` (0: it stops)."""
    if interval == "stop":
        return 0
    match = _SEED_INTERVAL.search(interval)  # JavaScript's String.match: anywhere in the text
    assert match, f"the seed's component falls back to 30 s on {interval!r}"
    return int(match[1]) * (60 if match[2].startswith("minute") else 1)


@pytest.mark.parametrize(
    "data",
    [
        render(project_doc("ghost"), NOW),
        render_profile(created_at=NOW - timedelta(hours=2)),
        render_profile(created_at=None),
        *(render_one(status=s, attempts=a, last_attempt=NOW - timedelta(seconds=d))
          for s in ("PENDING", "PROCESSING", "COMPLETED", "FAILED", "On_Hold", "NOT_FOUND")
          for a in (0, 3) for d in (-30, 0, 30, 90, 400)),
        render_one(status=None),
        render_one(status="PROCESSING", last_attempt=None),
    ],
    ids=lambda d: f"{d['status']}-{d.get('processing_stage', '')}",
)
def test_every_answer_carries_polling_advice_the_seed_component_parses(data: dict[str, Any]) -> None:
    assert _seed_component_seconds(data["recommended_polling_interval"]) == data["recommended_polling_seconds"]
    if is_terminal(data):
        assert data["recommended_polling_interval"] == "stop"


def test_a_queue_row_whose_status_reads_not_found_is_still_an_unknown_status() -> None:
    data = render_one(status="NOT_FOUND")
    assert (data["processing_stage"], data["recommended_polling_interval"]) == ("unknown", "60 seconds")


@pytest.mark.parametrize(
    ("duration", "sent"),
    [(None, None), (0.0, None), (0.004, None), (0.006, 0.01), (1.234, 1.23), (125.4, 125.4)],
)
def test_a_duration_is_sent_with_two_decimals_and_zero_as_null(duration: float | None, sent: float | None) -> None:
    # The seed's component renders `{d && <p>Duration: ...</p>}`: a 0 would show as a stray "0".
    assert duration_field(duration) == sent


# --------------------------------------------------------------------------- timestamps are UTC


def test_profile_timestamps_are_rendered_in_utc() -> None:
    created = datetime(2024, 1, 15, 19, 30, 0, tzinfo=IST)  # 14:00Z
    scraped = datetime(2024, 1, 15, 6, 15, 0, 250000, tzinfo=PST)  # 14:15:00.25Z
    data = render_profile(now=NOW, created_at=created, last_scraped_at=scraped)
    assert_utc_iso(data["created_at"], at(14, 0))
    assert_utc_iso(data["last_scraped_at"], at(14, 15, 0.25))
    assert data["profile_age_hours"] == 0.5
    assert data["data_freshness"] == "fresh"


def test_queue_timestamps_are_rendered_in_utc() -> None:
    ts = datetime(2024, 1, 15, 19, 40, tzinfo=IST)  # 14:10Z
    last = datetime(2024, 1, 15, 6, 20, tzinfo=PST)  # 14:20Z
    data = render_one(status="FAILED", attempts=1, timestamp=ts, last_attempt=last)
    assert_utc_iso(data["timestamp"], at(14, 10))
    assert_utc_iso(data["last_attempt"], at(14, 20))
    assert_utc_iso(data["next_retry_time"], at(14, 22))  # + 2^1 minutes


def test_processing_duration_with_offset_last_attempt() -> None:
    last = datetime(2024, 1, 15, 6, 28, 30, tzinfo=PST)  # 14:28:30Z, 90 s before NOW
    data = render_one(status="PROCESSING", last_attempt=last)
    assert data["processing_duration_seconds"] == 90.0
    assert data["processing_stage"] == "fetching_profile_data"
    assert_utc_iso(data["last_attempt"], at(14, 28, 30))


# --------------------------------------------------------------------------- PROCESSING stages


@pytest.mark.parametrize(
    ("elapsed_ms", "duration", "stage", "progress", "polling", "polling_s"),
    [
        (0, None, "initializing", 10, "15 seconds", 15),  # 0 is sent as null, as the seed does
        (1, None, "initializing", 10, "15 seconds", 15),
        (30_000, 30.0, "initializing", 10, "15 seconds", 15),
        (59_999, 60.0, "initializing", 10, "15 seconds", 15),  # 59.999 s rounds to 60.0 but is < 60
        (60_000, 60.0, "fetching_profile_data", 30, "30 seconds", 30),
        (60_001, 60.0, "fetching_profile_data", 30, "30 seconds", 30),
        (119_999, 120.0, "fetching_profile_data", 30, "30 seconds", 30),
        (120_000, 120.0, "analyzing_content", 60, "30 seconds", 30),
        (125_400, 125.4, "analyzing_content", 60, "30 seconds", 30),
        (179_999, 180.0, "analyzing_content", 60, "30 seconds", 30),
        (180_000, 180.0, "processing_insights", 80, "30 seconds", 30),
        (239_999, 240.0, "processing_insights", 80, "30 seconds", 30),
        (240_000, 240.0, "finalizing", 95, "30 seconds", 30),
        (3_600_000, 3600.0, "finalizing", 95, "30 seconds", 30),
        (86_400_000 * 3, 259200.0, "finalizing", 95, "30 seconds", 30),
    ],
)
def test_processing_stage_edges(
    elapsed_ms: int, duration: float | None, stage: str, progress: int, polling: str, polling_s: int
) -> None:
    data = render_one(status="PROCESSING", last_attempt=NOW - timedelta(milliseconds=elapsed_ms))
    assert data["processing_duration_seconds"] == duration
    assert data["processing_stage"] == stage
    assert data["progress_percentage"] == progress
    assert data["recommended_polling_interval"] == polling
    assert data["recommended_polling_seconds"] == polling_s
    assert data["next_action"] == "monitor_progress"
    assert data["can_be_cancelled"] is True
    assert data["is_retry_eligible"] is False
    assert data["next_retry_time"] is None
    assert data["queue_position"] == 1


@pytest.mark.parametrize(
    ("duration", "stage", "progress"),
    [
        (None, "starting", 5),
        (0.0, "initializing", 10),
        (59.999, "initializing", 10),
        (60.0, "fetching_profile_data", 30),
        (119.999, "fetching_profile_data", 30),
        (120.0, "analyzing_content", 60),
        (179.999, "analyzing_content", 60),
        (180.0, "processing_insights", 80),
        (239.999, "processing_insights", 80),
        (240.0, "finalizing", 95),
        (1e9, "finalizing", 95),
    ],
)
def test_stage_and_progress_processing(duration: float | None, stage: str, progress: int) -> None:
    assert stage_and_progress("PROCESSING", duration) == (stage, progress)


@pytest.mark.parametrize(
    ("status", "stage", "progress"),
    [
        ("PENDING", "queued", 0),
        ("COMPLETED", "completed", 100),
        ("FAILED", "failed", 0),
        ("On_Hold", "unknown", 0),
        ("processing", "unknown", 0),
        ("", "unknown", 0),
    ],
)
@pytest.mark.parametrize("duration", [None, 0.0, 125.0])
def test_stage_and_progress_other_statuses(status: str, stage: str, progress: int, duration: float | None) -> None:
    assert stage_and_progress(status, duration) == (stage, progress)


def test_processing_without_last_attempt_is_starting() -> None:
    data = render_one(status="PROCESSING", last_attempt=None)
    assert data["processing_duration_seconds"] is None
    assert data["processing_stage"] == "starting"
    assert data["progress_percentage"] == 5
    assert data["recommended_polling_interval"] == "30 seconds"
    assert data["recommended_polling_seconds"] == 30
    assert data["estimated_time_remaining"] == "2-4 minutes"
    assert data["next_action"] == "monitor_progress"
    assert data["last_attempt"] is None


@pytest.mark.parametrize("ahead", [timedelta(milliseconds=1), timedelta(seconds=30), timedelta(days=2)])
def test_future_last_attempt_is_duration_zero(ahead: timedelta) -> None:
    last = NOW + ahead
    data = render_one(status="PROCESSING", last_attempt=last)
    # Zero, sent as the seed sends it (`round(d, 2) if d else None`): null; the stage reads it as 0.
    assert data["processing_duration_seconds"] is None
    assert data["processing_stage"] == "initializing"
    assert data["progress_percentage"] == 10
    assert data["recommended_polling_interval"] == "15 seconds"
    assert data["recommended_polling_seconds"] == 15
    assert_utc_iso(data["last_attempt"], last)


@pytest.mark.parametrize(
    ("duration", "expected"),
    [
        (None, ("30 seconds", 30)),
        (0.0, ("15 seconds", 15)),
        (59.999, ("15 seconds", 15)),
        (60.0, ("30 seconds", 30)),
        (500.0, ("30 seconds", 30)),
    ],
)
def test_polling_interval_processing(duration: float | None, expected: tuple[str, int]) -> None:
    assert polling_interval("PROCESSING", duration) == expected


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("PENDING", ("30 seconds", 30)),
        ("COMPLETED", ("stop", 0)),
        ("FAILED", ("stop", 0)),
        ("On_Hold", ("60 seconds", 60)),
        ("failed", ("60 seconds", 60)),
    ],
)
def test_polling_interval_other_statuses(status: str, expected: tuple[str, int]) -> None:
    assert polling_interval(status, None) == expected


@pytest.mark.parametrize("status", ["PENDING", "FAILED", "COMPLETED", "On_Hold"])
def test_duration_only_while_processing(status: str) -> None:
    data = render_one(status=status, last_attempt=NOW - timedelta(seconds=100), attempts=1)
    assert data["processing_duration_seconds"] is None


def test_clock_fields_are_computed_at_render_time_not_projection_time() -> None:
    last = NOW - timedelta(seconds=10)
    doc = project_doc(rows=[qrow(1, status="PROCESSING", last_attempt=last)], projected_at=last)
    pos = QueuePosition(0, 1)
    early = render(doc, NOW, pos)
    late = render(doc, NOW + timedelta(seconds=190), pos)
    assert early["processing_stage"] == "initializing"
    assert early["processing_duration_seconds"] == 10.0
    assert late["processing_stage"] == "processing_insights"
    assert late["processing_duration_seconds"] == 200.0
    assert late["progress_percentage"] == 80
    assert late["recommended_polling_interval"] == "30 seconds"
    assert late["estimated_time_remaining"] == "40 seconds"


# --------------------------------------------------------------------------- ETA


@pytest.mark.parametrize(
    ("elapsed_s", "text"),
    [
        (125.4, "2 minutes"),  # 114.6 s -> 1.91 min -> 2
        (10.0, "4 minutes"),  # 230 s -> 3.83 -> 4
        (45.0, "3 minutes"),  # 195 s -> 3.25 -> 3
        (30.0, "4 minutes"),  # 210 s -> 3.5 -> 4 (half up; Python's round gives 4 too)
        (90.0, "3 minutes"),  # 150 s -> 2.5 -> 3 (half up; Python's round would give 2)
        (150.0, "2 minutes"),  # 90 s -> 1.5 -> 2
        (180.0, "1 minutes"),  # 60 s is not < 60: minutes
        (180.5, "60 seconds"),  # 59.5 s -> 60 (half up)
        (200.0, "40 seconds"),
        (209.5, "31 seconds"),  # 30.5 -> 31 (half up; Python's round gives 30)
        (239.5, "1 seconds"),  # 0.5 -> 1 (half up; Python's round gives 0)
        (240.0, "0 seconds"),
        (1000.0, "0 seconds"),  # never negative
    ],
)
def test_processing_eta(elapsed_s: float, text: str) -> None:
    data = render_one(status="PROCESSING", last_attempt=NOW - timedelta(seconds=elapsed_s))
    assert data["estimated_time_remaining"] == text
    seconds = data["estimated_seconds_remaining"]
    assert is_number(seconds)
    remaining = max(0.0, 240 - elapsed_s)
    assert seconds >= 0
    assert abs(seconds - remaining) <= 30
    assert estimated_time("PROCESSING", 1, elapsed_s)[0] == text


def test_processing_eta_without_duration() -> None:
    assert estimated_time("PROCESSING", 1, None)[0] == "2-4 minutes"


@pytest.mark.parametrize(
    ("position", "text"),
    [
        (1, "1-2 minutes"),
        (2, "3-8 minutes"),
        (3, "3-8 minutes"),
        (4, "10-25 minutes"),
        (10, "10-25 minutes"),
        (11, "25+ minutes"),
        (500, "25+ minutes"),
    ],
)
def test_pending_eta_by_position(position: int, text: str) -> None:
    pos = QueuePosition(ahead=position - 1, total=position + 7)
    data = render_one(status="PENDING", position=pos)
    assert data["queue_position"] == position
    assert data["ahead_count"] == position - 1
    assert data["total_queue_size"] == position + 7
    assert data["estimated_time_remaining"] == text
    seconds = data["estimated_seconds_remaining"]
    assert seconds is None or (is_number(seconds) and seconds > 0)
    assert estimated_time("PENDING", position, None)[0] == text


def test_pending_eta_seconds_do_not_shrink_further_back_in_the_queue() -> None:
    seconds = [estimated_time("PENDING", p, None)[1] for p in (1, 2, 3, 4, 10, 11, 100)]
    numbers = [s for s in seconds if s is not None]
    assert numbers == sorted(numbers)


def test_pending_eta_without_position() -> None:
    assert estimated_time("PENDING", None, None)[0] == "5-15 minutes"


@pytest.mark.parametrize(
    ("status", "text", "seconds"),
    [("COMPLETED", "complete", 0), ("FAILED", "failed - requires retry", None)],
)
def test_terminal_queue_eta(status: str, text: str, seconds: int | None) -> None:
    data = render_one(status=status, last_attempt=NOW - timedelta(minutes=1), attempts=1)
    assert data["estimated_time_remaining"] == text
    assert data["estimated_seconds_remaining"] == seconds
    if seconds is not None:
        assert is_number(data["estimated_seconds_remaining"])
    assert estimated_time(status, None, None) == (text, seconds)


@pytest.mark.parametrize(
    ("x", "expected"),
    [
        (0.0, 0),
        (0.4999, 0),
        (0.5, 1),
        (1.5, 2),
        (2.5, 3),
        (3.5, 4),
        (30.5, 31),
        (59.5, 60),
        (1.91, 2),
        (2.49, 2),
        (-0.5, 0),
        (-1.5, -1),
    ],
)
def test_js_round_is_half_up(x: float, expected: int) -> None:
    assert js_round(x) == expected
    assert isinstance(js_round(x), int)


# --------------------------------------------------------------------------- retries


@pytest.mark.parametrize(
    ("attempts", "shown", "eligible", "backoff_min", "action"),
    [
        (None, 0, True, 1, "retry_processing"),  # NULL attempts counts as 0
        (0, 0, True, 1, "retry_processing"),
        (1, 1, True, 2, "retry_processing"),
        (2, 2, True, 4, "retry_processing"),
        (3, 3, False, None, "contact_support"),
        (4, 4, False, None, "contact_support"),
        (10, 10, False, None, "contact_support"),
    ],
)
def test_failed_retry_eligibility(
    attempts: int | None, shown: int, eligible: bool, backoff_min: int | None, action: str
) -> None:
    last = at(14, 22)
    data = render_one(status="FAILED", attempts=attempts, last_attempt=last)
    assert data["attempts"] == shown
    assert data["is_retry_eligible"] is eligible
    assert data["next_action"] == action
    if backoff_min is None:
        assert data["next_retry_time"] is None
    else:
        assert_utc_iso(data["next_retry_time"], last + timedelta(minutes=backoff_min))
    assert data["recommended_polling_interval"] == "stop"
    assert data["recommended_polling_seconds"] == 0
    assert data["can_be_cancelled"] is False
    assert data["processing_stage"] == "failed"
    assert is_terminal(data) is (not eligible)


def test_failed_eligible_without_last_attempt_has_no_retry_time() -> None:
    data = render_one(status="FAILED", attempts=1, last_attempt=None)
    assert data["is_retry_eligible"] is True
    assert data["next_retry_time"] is None
    assert data["next_action"] == "retry_processing"


@pytest.mark.parametrize("status", ["PENDING", "PROCESSING", "COMPLETED", "On_Hold"])
@pytest.mark.parametrize("attempts", [0, 1, 2, None])
def test_only_failed_is_retry_eligible(status: str, attempts: int | None) -> None:
    data = render_one(status=status, attempts=attempts, last_attempt=NOW - timedelta(seconds=5))
    assert data["is_retry_eligible"] is False
    assert data["next_retry_time"] is None


@pytest.mark.parametrize(
    ("attempts", "minutes"),
    [(0, 1), (1, 2), (2, 4), (3, 8), (4, 16), (5, 30), (6, 30), (30, 30), (100, 30), (1024, 30), (2**31 - 1, 30)],
)
def test_retry_backoff_is_capped_at_30_minutes(attempts: int, minutes: int) -> None:
    assert retry_backoff_minutes(attempts) == minutes


@pytest.mark.parametrize(
    ("status", "attempts", "expected"),
    [
        ("FAILED", 0, True),
        ("FAILED", 2, True),
        ("FAILED", 3, False),
        ("FAILED", 7, False),
        ("PENDING", 0, False),
        ("PROCESSING", 0, False),
        ("COMPLETED", 0, False),
        ("failed", 0, False),
    ],
)
def test_is_retry_eligible(status: str, attempts: int, expected: bool) -> None:
    assert is_retry_eligible(status, attempts) is expected


@pytest.mark.parametrize(
    ("status", "eligible", "action"),
    [
        ("COMPLETED", False, "view_profile"),
        ("PENDING", False, "wait_for_processing"),
        ("PROCESSING", False, "monitor_progress"),
        ("FAILED", True, "retry_processing"),
        ("FAILED", False, "contact_support"),
        ("On_Hold", False, "check_system_status"),
        ("On_Hold", True, "check_system_status"),
        ("", False, "check_system_status"),
    ],
)
def test_next_action(status: str, eligible: bool, action: str) -> None:
    assert next_action(status, eligible) == action


# --------------------------------------------------------------------------- other statuses


def test_completed_queue_row() -> None:
    data = render_one(status="COMPLETED", attempts=1, last_attempt=NOW - timedelta(minutes=3))
    assert data["completed"] is False
    assert data["status"] == "COMPLETED"
    assert data["message"] == "Profile is completed"
    assert data["processing_stage"] == "completed"
    assert data["progress_percentage"] == 100
    assert data["queue_position"] is None
    assert data["ahead_count"] is None
    assert data["total_queue_size"] is None
    assert data["estimated_time_remaining"] == "complete"
    assert data["estimated_seconds_remaining"] == 0
    assert data["recommended_polling_interval"] == "stop"
    assert data["recommended_polling_seconds"] == 0
    assert data["can_be_cancelled"] is False
    assert data["next_action"] == "view_profile"
    assert data["is_retry_eligible"] is False


@pytest.mark.parametrize("status", ["On_Hold", "CANCELLED", "pending", "Processing"])
def test_unknown_status_keeps_its_text(status: str) -> None:
    data = render_one(status=status, attempts=1, last_attempt=NOW - timedelta(seconds=70))
    assert data["status"] == status
    assert data["message"] == f"Profile is {status.lower()}"
    assert data["completed"] is False
    assert data["processing_stage"] == "unknown"
    assert data["progress_percentage"] == 0
    assert data["recommended_polling_interval"] == "60 seconds"
    assert data["recommended_polling_seconds"] == 60
    assert data["next_action"] == "check_system_status"
    assert data["estimated_time_remaining"] == "unknown"
    assert data["queue_position"] is None
    assert data["ahead_count"] is None
    assert data["total_queue_size"] is None
    assert data["processing_duration_seconds"] is None
    assert data["can_be_cancelled"] is False
    assert data["is_retry_eligible"] is False
    assert data["next_retry_time"] is None
    assert is_terminal(data) is False


def test_null_status_does_not_break_anything() -> None:
    data = render_one(status=None, attempts=None, priority=None, request_id=None, last_attempt=NOW)
    assert data["completed"] is False
    assert isinstance(data["status"], str)
    assert data["message"] == f"Profile is {data['status'].lower()}"
    assert data["processing_stage"] == "unknown"
    assert data["recommended_polling_interval"] == "60 seconds"
    assert data["recommended_polling_seconds"] == 60
    assert data["next_action"] == "check_system_status"
    assert data["queue_position"] is None
    assert data["attempts"] == 0
    assert data["priority"] is None
    json.dumps(data)


@pytest.mark.parametrize("attempts", [-(2**31), -1, 2**31 - 1])
@pytest.mark.parametrize("status", ["FAILED", "PENDING", "PROCESSING", "COMPLETED", "On_Hold"])
def test_extreme_attempts_do_not_break_anything(status: str, attempts: int) -> None:
    data = render_one(status=status, attempts=attempts, last_attempt=NOW - timedelta(seconds=5))
    assert data["attempts"] == attempts
    assert data["is_retry_eligible"] is (status == "FAILED" and attempts < 3)
    json.dumps(data)


@pytest.mark.parametrize("status", ["COMPLETED", "FAILED", "On_Hold"])
def test_position_is_null_when_not_active_even_if_given(status: str) -> None:
    doc = project_doc(rows=[qrow(1, status=status)])
    data = render(doc, NOW, QueuePosition(ahead=4, total=9))
    assert data["queue_position"] is None
    assert data["ahead_count"] is None
    assert data["total_queue_size"] is None


@pytest.mark.parametrize("status", ["PENDING", "PROCESSING"])
def test_position_fields_for_active_statuses(status: str) -> None:
    doc = project_doc(rows=[qrow(1, status=status, last_attempt=NOW - timedelta(seconds=5))])
    data = render(doc, NOW, QueuePosition(ahead=4, total=9))
    assert data["queue_position"] == 5
    assert data["ahead_count"] == 4
    assert data["total_queue_size"] == 9
    assert data["can_be_cancelled"] is True


def test_null_priority_is_shown_and_ranks_with_low() -> None:
    mine = [qrow(1, status="PENDING", priority=None, timestamp=at(14, 10))]
    others = [
        qrow(2, username="a", status="PENDING", priority="LOW", timestamp=at(14, 9)),  # ahead
        qrow(3, username="b", status="PENDING", priority="LOW", timestamp=at(14, 11)),  # behind
        qrow(4, username="c", status="PENDING", priority="MEDIUM", timestamp=at(14, 20)),  # ahead
        qrow(5, username="d", status="PENDING", priority="SOMETHING", timestamp=at(14, 10)),  # id 5 > 1: behind
    ]
    data = render_scenario(mine, others)
    assert data["priority"] is None
    assert data["queue_position"] == 3
    assert data["ahead_count"] == 2
    assert data["total_queue_size"] == 5
    assert data["estimated_time_remaining"] == "3-8 minutes"


def test_pending_position_counts_everyones_rows_including_own_older_row() -> None:
    mine = [
        qrow(1, username="Entrepreneur_Mike", status="PENDING", priority="HIGH", timestamp=at(14, 0)),
        qrow(2, username="entrepreneur_mike", status="PENDING", priority="HIGH", timestamp=at(14, 5)),
    ]
    others = [
        qrow(3, username="x", status="PROCESSING", priority="HIGH", timestamp=at(14, 5)),  # same ts, id 3 > 2
        qrow(4, username="y", status="PROCESSING", priority="HIGH", timestamp=at(13, 0)),  # ahead
    ]
    data = render_scenario(mine, others)
    assert data["request_id"] == "req-2"
    assert data["queue_position"] == 3
    assert data["ahead_count"] == 2
    assert data["total_queue_size"] == 4


# --------------------------------------------------------------------------- profiles (`exists`)


@pytest.mark.parametrize(
    ("age", "hours", "freshness"),
    [
        (timedelta(0), 0.0, "fresh"),
        (timedelta(seconds=20), 0.01, "fresh"),  # 0.0056 -> 0.01
        (timedelta(minutes=10), 0.17, "fresh"),  # 0.1667 -> 0.17 (not truncated to 0.16)
        (timedelta(hours=1, seconds=36), 1.01, "fresh"),
        (timedelta(hours=2, minutes=30), 2.5, "fresh"),
        (timedelta(hours=7, minutes=19, seconds=48), 7.33, "fresh"),
        (timedelta(hours=23, minutes=59, seconds=59, milliseconds=999), 24.0, "fresh"),
        (timedelta(hours=24), 24.0, "standard"),
        (timedelta(hours=24, microseconds=1), 24.0, "standard"),
        (timedelta(hours=48, minutes=20), 48.33, "standard"),
        (timedelta(days=100), 2400.0, "standard"),
    ],
)
def test_profile_age_and_freshness(age: timedelta, hours: float, freshness: str) -> None:
    data = render_profile(created_at=NOW - age)
    assert data["profile_age_hours"] == hours
    assert data["data_freshness"] == freshness
    assert_utc_iso(data["created_at"], NOW - age)


def test_profile_with_null_created_at() -> None:
    data = render_profile(created_at=None, last_scraped_at=None)
    assert data["profile_age_hours"] is None
    assert data["data_freshness"] == "standard"
    assert data["created_at"] is None
    assert data["last_scraped_at"] is None
    assert data["status"] == "exists"
    assert data["completed"] is True


@pytest.mark.parametrize(
    ("followers", "posts"),
    [(None, None), (0, 0), (None, 5), (7, None), (2**31 - 1, 0)],
)
def test_profile_counts_are_passed_through(followers: int | None, posts: int | None) -> None:
    data = render_profile(created_at=NOW, followers_count=followers, posts_count=posts)
    assert data["followers_count"] == followers
    assert data["posts_count"] == posts
    if followers is None:
        assert data["followers_count"] is None
    if posts is None:
        assert data["posts_count"] is None


def test_profile_row_in_other_case_answers_with_normalized_urls() -> None:
    doc = project_doc("mike_1", profiles=[prow(username="Mike_1", created_at=NOW - timedelta(hours=1))])
    data = render(doc, NOW)
    assert data["status"] == "exists"
    assert data["profile_url"] == "/api/profile/mike_1"
    assert data["content_url"] == "/api/profile/mike_1/posts"


def test_two_profile_rows_differing_in_case_most_recently_updated_answers() -> None:
    older = ProfileRow(UUID(int=1), "MIKE_1", NOW - timedelta(days=3), NOW - timedelta(days=2), None, 1, 1)
    newer = ProfileRow(UUID(int=2), "mike_1", NOW - timedelta(days=5), NOW - timedelta(hours=1), None, 2, 2)
    for profiles in ([older, newer], [newer, older]):
        data = render(project_doc("mike_1", profiles=profiles), NOW)
        assert data["followers_count"] == 2
        assert data["profile_age_hours"] == 120.0


# --------------------------------------------------------------------------- is_terminal


def _data(**row: Any) -> dict[str, Any]:
    return render_one(**row)


@pytest.mark.parametrize(
    ("data", "terminal"),
    [
        (render_profile(created_at=NOW), True),
        (render_profile(created_at=None), True),
        (_data(status="COMPLETED"), True),
        (_data(status="FAILED", attempts=3, last_attempt=NOW), True),
        (_data(status="FAILED", attempts=2, last_attempt=NOW), False),
        (_data(status="FAILED", attempts=None, last_attempt=NOW), False),
        (_data(status="PENDING"), False),
        (_data(status="PROCESSING", last_attempt=NOW), False),
        (_data(status="On_Hold"), False),
        (render(project_doc("ghost"), NOW), False),  # NOT_FOUND: the name may be submitted next
    ],
)
def test_is_terminal(data: dict[str, Any], terminal: bool) -> None:
    assert is_terminal(data) is terminal


# --------------------------------------------------------------------------- next_clock_change


@pytest.mark.parametrize(
    ("elapsed", "boundary_s"),
    [
        (timedelta(0), 60),
        (timedelta(seconds=59, milliseconds=999), 60),
        (timedelta(seconds=60), 120),
        (timedelta(seconds=119), 120),
        (timedelta(seconds=120), 180),
        (timedelta(seconds=130), 180),
        (timedelta(seconds=180), 240),
        (timedelta(seconds=239, microseconds=999_999), 240),
        (timedelta(seconds=240), None),
        (timedelta(hours=5), None),
        (timedelta(seconds=-30), 60),  # future last_attempt: still initializing until +60
    ],
)
def test_next_clock_change_processing(elapsed: timedelta, boundary_s: int | None) -> None:
    last = NOW - elapsed
    doc = project_doc(rows=[qrow(1, status="PROCESSING", last_attempt=last)])
    change = next_clock_change(doc, NOW)
    if boundary_s is None:
        assert change is None
        return
    assert change == last + timedelta(seconds=boundary_s)
    assert change > NOW
    # the stage really changes at that instant, and not before it
    pos = QueuePosition(0, 1)
    before = render(doc, change - timedelta(microseconds=1), pos)
    after = render(doc, change, pos)
    assert before["processing_stage"] != after["processing_stage"]
    assert render(doc, NOW, pos)["processing_stage"] == before["processing_stage"]


def test_next_clock_change_processing_with_offset_last_attempt() -> None:
    last = datetime(2024, 1, 15, 6, 29, 30, tzinfo=PST)  # 14:29:30Z
    doc = project_doc(rows=[qrow(1, status="PROCESSING", last_attempt=last)])
    assert next_clock_change(doc, NOW) == at(14, 30, 30)


@pytest.mark.parametrize(
    ("age", "expected_in"),
    [
        (timedelta(0), timedelta(hours=24)),
        (timedelta(hours=1), timedelta(hours=23)),
        (timedelta(hours=23, minutes=59, seconds=59, milliseconds=999), timedelta(milliseconds=1)),
        (timedelta(hours=24), None),
        (timedelta(days=30), None),
    ],
)
def test_next_clock_change_freshness(age: timedelta, expected_in: timedelta | None) -> None:
    doc = project_doc(profiles=[prow(created_at=NOW - age)])
    change = next_clock_change(doc, NOW)
    if expected_in is None:
        assert change is None
        return
    assert change == NOW + expected_in
    before = render(doc, change - timedelta(microseconds=1))
    after = render(doc, change)
    assert before["data_freshness"] == "fresh"
    assert after["data_freshness"] == "standard"


@pytest.mark.parametrize(
    "doc",
    [
        project_doc(profiles=[prow(created_at=None)]),
        project_doc("ghost"),
        project_doc(rows=[qrow(1, status="PROCESSING", last_attempt=None)]),
        project_doc(rows=[qrow(1, status="PENDING")]),
        project_doc(rows=[qrow(1, status="PENDING", last_attempt=NOW - timedelta(seconds=10))]),
        project_doc(rows=[qrow(1, status="FAILED", attempts=1, last_attempt=NOW - timedelta(seconds=10))]),
        project_doc(rows=[qrow(1, status="COMPLETED", last_attempt=NOW - timedelta(seconds=10))]),
        project_doc(rows=[qrow(1, status="On_Hold", last_attempt=NOW - timedelta(seconds=10))]),
    ],
)
def test_next_clock_change_none(doc: StatusDocument) -> None:
    assert next_clock_change(doc, NOW) is None
    assert not clock_moved_since(doc, NOW - timedelta(days=400), NOW)


@pytest.mark.parametrize("seed", range(40))
def test_the_clock_moved_a_version_exactly_when_its_stage_or_freshness_differs(seed: int) -> None:
    # What a stream resuming a client that holds this version relies on: no crossing between
    # `since` and `now` means every rendering in between had the same stage and freshness.
    rng = random.Random(seed)
    since = NOW - timedelta(seconds=rng.uniform(0, 400))
    now = since + timedelta(seconds=rng.uniform(0, 200))
    if seed % 2:
        doc = project_doc(rows=[qrow(1, status="PROCESSING", last_attempt=NOW - timedelta(seconds=rng.uniform(-60, 400)))])
        field = "processing_stage"
    else:
        doc = project_doc(profiles=[prow(created_at=NOW - timedelta(hours=24) + timedelta(seconds=rng.uniform(-400, 200)))])
        field = "data_freshness"
    pos = QueuePosition(0, 1)
    seen = {render(doc, since + (now - since) * i / 50, pos)[field] for i in range(51)}
    assert clock_moved_since(doc, since, now) == (len(seen) > 1), (since, now, seen)


# --------------------------------------------------------------------------- render is pure


def test_render_is_deterministic_and_does_not_mutate() -> None:
    doc = project_doc(rows=[qrow(1, status="PROCESSING", last_attempt=NOW - timedelta(seconds=61))])
    before = doc.model_dump_json()
    first = render(doc, NOW, QueuePosition(2, 5))
    second = render(doc, NOW, QueuePosition(2, 5))
    assert first == second
    assert doc.model_dump_json() == before
