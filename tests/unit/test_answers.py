"""Rendered answers reused by the status endpoint: byte for byte what rendering again would send."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from uuid import UUID

import orjson
import pytest

from api.status import Answer, RunningAnswer
from shared.model.estimates import Estimates, MovingAverage
from shared.model.render import duration_only_until, render
from shared.model.rows import QueueRow
from shared.model.rules import QueuePosition, project

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("seed", range(30))
def test_a_running_answer_equals_a_fresh_render_at_every_moment_it_is_kept(seed: int) -> None:
    rng = random.Random(seed)
    started = NOW - timedelta(seconds=rng.uniform(-3, 300))
    row = QueueRow(UUID(int=seed), "runner", "PROCESSING", "HIGH", started - timedelta(minutes=2), started, 1,
                   'said "no", then yes', "req", started)
    doc = project("runner", [], [row], version=7, projected_at=NOW)
    estimates = Estimates(processing=MovingAverage(150.0, 40)) if seed % 2 else Estimates()
    position = QueuePosition(2, 9)
    until = duration_only_until(doc, NOW, estimates)
    assert until is not None
    kept = RunningAnswer.of(render(doc, NOW, position, estimates), started)
    end = min(until, NOW + timedelta(hours=1))
    for t in [NOW, *(NOW + (end - NOW) * rng.random() for _ in range(50))]:
        fresh = Answer.of(render(doc, t, position, estimates)).response(None, t)
        reused = kept.response(None, t)
        assert (reused.status_code, reused.headers, reused.body) == (fresh.status_code, fresh.headers, fresh.body), t
        tag = fresh.headers[0][1]
        assert kept.response(tag, t).status_code == 304


def test_a_running_answer_started_ahead_of_the_clock_sends_null_until_the_start() -> None:
    started = NOW + timedelta(seconds=20)
    row = QueueRow(UUID(int=1), "early", "PROCESSING", "HIGH", NOW, started, 1, None, "req", NOW)
    doc = project("early", [], [row], version=7, projected_at=NOW)
    kept = RunningAnswer.of(render(doc, NOW, QueuePosition(0, 1)), started)
    for t, duration in [(NOW, None), (started, None), (started + timedelta(seconds=1.5), 1.5)]:
        body = kept.response(None, t).body
        assert body == Answer.of(render(doc, t, QueuePosition(0, 1))).body
        assert orjson.loads(body)["data"]["processing_duration_seconds"] == duration
