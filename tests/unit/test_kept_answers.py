"""A kept answer is served again only while what rendered it stands."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

from api.kept_answers import KeptAnswers
from shared.model.estimates import Estimates
from shared.model.rows import QueueRow
from shared.model.rules import QueuePosition, project
from shared.redis_store.reader import Reading

NOW = datetime(2026, 1, 1, tzinfo=UTC)
UNTIL = NOW + timedelta(seconds=30)
DONE = Reading(project("done", [], [], version=1, projected_at=NOW), None, False)
ACTIVE = Reading(project("busy", [], [], version=1, projected_at=NOW), QueuePosition(3, 10), False)


def test_an_answer_is_reused_with_its_document_position_estimates_and_time() -> None:
    answers: KeptAnswers[str] = KeptAnswers()
    estimates = Estimates()
    answers.keep("done", DONE, "rendered", UNTIL, estimates)
    assert answers.get("done", DONE, NOW, estimates) == "rendered"
    assert answers.get("done", Reading(DONE.document, None, False, seq=9), NOW, estimates) == "rendered"  # re-read
    assert answers.get("done", DONE, UNTIL - timedelta(microseconds=1), estimates) == "rendered"
    assert answers.get("done", DONE, UNTIL, estimates) is None  # the clock has changed it by then
    assert answers.get("done", DONE, NOW, Estimates()) == "rendered"  # no estimates in a NOT_FOUND answer
    assert answers.get("other", DONE, NOW, estimates) is None


def test_a_pending_or_running_answer_needs_the_same_estimates() -> None:
    answers: KeptAnswers[str] = KeptAnswers()
    estimates = Estimates()
    for status in ("PENDING", "PROCESSING"):
        row = QueueRow(UUID(int=1), "busy", status, "HIGH", NOW, None, 0, None, "r", NOW)
        reading = Reading(project("busy", [], [row], version=1, projected_at=NOW), QueuePosition(0, 1), False)
        answers.keep("busy", reading, status, UNTIL, estimates)
        assert answers.get("busy", reading, NOW, estimates) == status
        assert answers.get("busy", reading, NOW, Estimates()) is None  # re-read averages may render differently


def test_another_document_or_position_renders_again() -> None:
    answers: KeptAnswers[str] = KeptAnswers()
    estimates = Estimates()
    answers.keep("busy", ACTIVE, "position 4", UNTIL, estimates)
    assert answers.get("busy", ACTIVE, NOW, estimates) == "position 4"
    moved = Reading(ACTIVE.document, QueuePosition(2, 9), False)
    assert answers.get("busy", moved, NOW, estimates) is None
    equal_not_same = Reading(ACTIVE.document.model_copy(), ACTIVE.position, False)  # decoded anew: new bytes
    assert answers.get("busy", equal_not_same, NOW, estimates) is None


def test_an_answer_the_clock_may_change_at_any_moment_is_not_kept_and_size_is_bounded() -> None:
    answers: KeptAnswers[str] = KeptAnswers(kept=2)
    estimates = Estimates()
    answers.keep("done", DONE, "kept", UNTIL, estimates)
    answers.keep("done", DONE, "moving", None, estimates)  # unchanged_until said: any moment
    assert answers.get("done", DONE, NOW, estimates) is None
    for name in ("a", "b", "c"):
        answers.keep(name, DONE, name, UNTIL, estimates)
    assert answers.get("a", DONE, NOW, estimates) is None and answers.get("c", DONE, NOW, estimates) == "c"
