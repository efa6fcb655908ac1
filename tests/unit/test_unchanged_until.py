"""`unchanged_until`: a rendered answer may be reused exactly as long as rendering again would give the same."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from shared.model.estimates import Estimates, MovingAverage
from shared.model.render import NEVER, duration_only_until, render, unchanged_until, uses_estimates
from shared.model.rows import ProfileRow, QueueRow
from shared.model.rules import QueuePosition, project

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
MEASURED = Estimates(
    processing=MovingAverage(200.0, 50), waiting={0: MovingAverage(60.0, 50), 1: MovingAverage(300.0, 50), 2: MovingAverage(900.0, 50)}
)


def _queue_doc(status: str, *, last_attempt: datetime | None, priority: str = "MEDIUM", attempts: int = 1):
    row = QueueRow(UUID(int=1), "user", status, priority, NOW - timedelta(minutes=7), last_attempt, attempts, None, "r", NOW)
    return project("user", [], [row], version=1, projected_at=NOW)


def _profile_doc(created: datetime | None):
    row = ProfileRow(UUID(int=2), "user", created, created, created, 10, 2)
    return project("user", [row], [], version=1, projected_at=NOW)


def _later(now: datetime, until: datetime, rng: random.Random) -> list[datetime]:
    """Moments between `now` and `until` (capped at a day), both ends included, and random ones."""
    end = min(until, now + timedelta(days=1)) - timedelta(microseconds=1)
    span = (end - now).total_seconds()
    return [now, end, *(now + timedelta(seconds=rng.uniform(0, span)) for _ in range(200))]


@pytest.mark.parametrize("seed", range(40))
def test_a_profile_renders_alike_until_then_and_differently_just_after(seed: int) -> None:
    rng = random.Random(seed)
    created = NOW - timedelta(seconds=rng.uniform(-100, 3 * 86400))
    doc = _profile_doc(created)
    until = unchanged_until(doc, NOW)
    assert until is not None and NOW < until < NEVER or until <= NOW + timedelta(milliseconds=1)
    first = render(doc, NOW)
    for t in _later(NOW, until, rng):
        assert render(doc, t) == first, t
    assert render(doc, until + timedelta(milliseconds=2)) != first  # the figure moved right after


@pytest.mark.parametrize(
    ("status", "last_attempt", "estimates"),
    [
        ("PENDING", None, Estimates()),
        ("PENDING", NOW - timedelta(minutes=1), Estimates()),
        ("COMPLETED", NOW - timedelta(minutes=3), MEASURED),
        ("FAILED", NOW - timedelta(minutes=3), MEASURED),
        ("FAILED", None, Estimates()),
        ("PROCESSING", None, MEASURED),  # no start time: "starting" for good
        ("BOGUS", NOW, MEASURED),
    ],
)
def test_renderings_no_clock_changes_are_kept_for_good(status: str, last_attempt: datetime | None, estimates: Estimates) -> None:
    doc = _queue_doc(status, last_attempt=last_attempt)
    assert unchanged_until(doc, NOW, estimates) is NEVER
    first = render(doc, NOW, QueuePosition(3, 10), estimates)
    for t in _later(NOW, NOW + timedelta(days=30), random.Random(1)):
        assert render(doc, t, QueuePosition(3, 10), estimates) == first


def test_not_found_is_kept_for_good() -> None:
    doc = project("nobody", [], [], version=1, projected_at=NOW)
    assert unchanged_until(doc, NOW) is NEVER


@pytest.mark.parametrize(
    ("status", "estimates"), [("PROCESSING", Estimates()), ("PENDING", MEASURED)]
)
def test_renderings_the_clock_moves_are_not_kept(status: str, estimates: Estimates) -> None:
    doc = _queue_doc(status, last_attempt=NOW - timedelta(seconds=30), priority="LOW")
    assert unchanged_until(doc, NOW, estimates) is None
    position = QueuePosition(3, 10)
    assert render(doc, NOW, position, estimates) != render(doc, NOW + timedelta(seconds=61), position, estimates)


@pytest.mark.parametrize("seed", range(60))
def test_a_running_job_changes_only_its_duration_until_then(seed: int) -> None:
    rng = random.Random(seed)
    estimates = MEASURED if seed % 2 else Estimates()
    started = NOW - timedelta(seconds=rng.uniform(-5, 400))
    doc = _queue_doc("PROCESSING", last_attempt=started)
    until = duration_only_until(doc, NOW, estimates)
    assert until is not None
    position = QueuePosition(0, 5)
    first = render(doc, NOW, position, estimates)
    for t in _later(NOW, until, rng):
        later = render(doc, t, position, estimates)
        assert later["processing_duration_seconds"] == (round(max(0.0, (t - started).total_seconds()), 2) or None)
        assert {**later, "processing_duration_seconds": None} == {**first, "processing_duration_seconds": None}, t
    if until < NEVER:
        after = render(doc, until + timedelta(milliseconds=2), position, estimates)
        assert {**after, "processing_duration_seconds": None} != {**first, "processing_duration_seconds": None}


def test_only_running_jobs_with_a_start_have_a_moving_duration() -> None:
    assert duration_only_until(_queue_doc("PENDING", last_attempt=NOW), NOW) is None
    assert duration_only_until(_queue_doc("PROCESSING", last_attempt=None), NOW) is None
    assert duration_only_until(_profile_doc(NOW), NOW) is None


@pytest.mark.parametrize("status", ["PENDING", "PROCESSING", "COMPLETED", "FAILED", "BOGUS", None])
@pytest.mark.parametrize("last_attempt", [None, NOW - timedelta(seconds=90)])
def test_only_answers_that_use_the_estimates_render_differently_with_others(status: str | None, last_attempt: datetime | None) -> None:
    docs = [_queue_doc(status, last_attempt=last_attempt), _profile_doc(NOW - timedelta(hours=3)), project("user", [], [], version=1, projected_at=NOW)]  # type: ignore[arg-type]
    for doc in docs:
        with_none, with_measured = (render(doc, NOW, QueuePosition(3, 10), e) for e in (Estimates(), MEASURED))
        if not uses_estimates(doc):
            assert with_none == with_measured
        elif status in ("PENDING", "PROCESSING"):
            assert with_none != with_measured  # the figures reach the answer
