"""The API's process cache serves only what change messages prove still exact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from unittest import mock

from api.cache import MAX_SILENCE_S, LocalCache
from shared.estimates import Estimates
from shared.reader import Reading
from shared.rules import QueuePosition, project

NOW = datetime(2026, 1, 1, tzinfo=UTC)
DONE = Reading(project("done", [], [], version=1, projected_at=NOW), None, False)
ACTIVE = Reading(project("busy", [], [], version=1, projected_at=NOW), QueuePosition(3, 10), False)


def _live_cache() -> LocalCache:
    cache = LocalCache()
    cache.reset(connected=True)
    cache.heard(None)
    return cache


def test_nothing_is_served_before_the_channel_is_heard() -> None:
    cache = LocalCache()
    cache.reset(connected=True)
    cache.put("done", DONE, cache.token())
    assert cache.get("done") is None


def test_an_entry_is_served_until_its_username_changes() -> None:
    cache = _live_cache()
    cache.put("done", DONE, cache.token())
    assert cache.get("done") is DONE
    cache.heard("someone_else")
    assert cache.get("done") is DONE
    cache.heard("done")
    assert cache.get("done") is None


def test_active_entries_go_when_the_queue_moves() -> None:
    cache = _live_cache()
    cache.put("busy", ACTIVE, cache.token())
    assert cache.get("busy") is ACTIVE
    cache.heard(None)  # a beat moves nothing
    cache.heard("someone_else", queue_moved=False)  # e.g. a profile, or a NOT_FOUND
    assert cache.get("busy") is ACTIVE
    cache.heard("someone_else", queue_moved=True)
    assert cache.get("busy") is None


def test_a_reading_taken_before_a_change_is_not_stored() -> None:
    cache = _live_cache()
    token = cache.token()
    cache.heard("done", queue_moved=False)  # arrives while the read was in flight
    cache.put("done", DONE, token)
    assert cache.get("done") is None


def test_silence_or_a_lost_subscription_turns_it_off() -> None:
    cache = _live_cache()
    cache.put("done", DONE, cache.token())
    with mock.patch("api.cache.time.monotonic", return_value=10**9):
        assert cache.get("done") is None
    assert MAX_SILENCE_S < 5
    cache.reset(connected=False)
    assert cache.get("done") is None


def test_misses_are_not_cached_and_size_is_bounded() -> None:
    cache = _live_cache()
    cache.put("nobody", Reading(None, None, False), cache.token())
    assert cache.get("nobody") is None
    small = LocalCache(max_entries=2)
    small.reset(connected=True)
    small.heard(None)
    for name in ("a", "b", "c"):
        small.put(name, DONE, small.token())
    assert small.get("a") is None and small.get("c") is DONE


def test_a_rendered_answer_is_reused_only_with_its_reading_estimates_and_time() -> None:
    cache = _live_cache()
    estimates, other_estimates = Estimates(), Estimates()
    cache.put("done", DONE, cache.token())
    until = NOW + timedelta(seconds=30)
    cache.keep_answer("done", DONE, "rendered", until, estimates)
    assert cache.answer("done", NOW, estimates) == "rendered"
    assert cache.answer("done", until - timedelta(microseconds=1), estimates) == "rendered"
    assert cache.answer("done", until, estimates) is None  # the clock has changed it by then
    assert cache.answer("done", NOW, other_estimates) is None  # re-read averages render differently
    cache.heard("done")
    assert cache.answer("done", NOW, estimates) is None


def test_an_answer_of_another_reading_or_a_moving_clock_is_not_kept() -> None:
    cache = _live_cache()
    estimates = Estimates()
    cache.put("done", DONE, cache.token())
    stale = Reading(DONE.document, None, False)  # read before, not the entry's reading
    cache.keep_answer("done", stale, "old", NOW + timedelta(seconds=30), estimates)
    assert cache.answer("done", NOW, estimates) is None
    cache.keep_answer("done", DONE, "moving", None, estimates)  # unchanged_until said: any moment
    assert cache.answer("done", NOW, estimates) is None


def test_answers_of_active_jobs_go_when_the_queue_moves() -> None:
    cache = _live_cache()
    estimates = Estimates()
    cache.put("busy", ACTIVE, cache.token())
    cache.keep_answer("busy", ACTIVE, "position 4", NOW + timedelta(days=1), estimates)
    assert cache.answer("busy", NOW, estimates) == "position 4"
    cache.heard("someone_else", queue_moved=True)
    assert cache.answer("busy", NOW, estimates) is None
