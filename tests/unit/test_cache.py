"""The API's process cache serves only what change messages prove still exact, and forgets when one is lost."""

from __future__ import annotations

from datetime import UTC, datetime
from unittest import mock

from api.cache import MAX_UNCHECKED_S, RECENT_CHANGES, LocalCache
from shared.model.rules import QueuePosition, project
from shared.redis_store.reader import Reading
from shared.redis_store.records import Change

NOW = datetime(2026, 1, 1, tzinfo=UTC)
DONE = Reading(project("done", [], [], version=1, projected_at=NOW), None, False)
ACTIVE = Reading(project("busy", [], [], version=1, projected_at=NOW), QueuePosition(3, 10), False)


_SEQ = iter(range(1, 10**9))


def change(name: str, queue_moved: bool = True, shard: int = 0, seq: int | None = None) -> Change:
    """A change message's line, numbered in order unless told."""
    return Change(shard, next(_SEQ) if seq is None else seq, name, 1, queue_moved)


def _live_cache() -> LocalCache:
    cache = LocalCache()
    cache.reset(connected=True)
    cache.check([0], cache.mark())
    return cache


def test_nothing_is_served_before_the_counters_are_checked() -> None:
    cache = LocalCache()
    cache.reset(connected=True)
    cache.put("done", DONE, cache.token())
    assert cache.get("done") is None


def test_an_entry_is_served_until_its_username_changes() -> None:
    cache = _live_cache()
    cache.put("done", DONE, cache.token())
    assert cache.get("done") is DONE
    cache.heard(change("someone_else"))
    assert cache.get("done") is DONE
    cache.heard(change("done"))
    assert cache.get("done") is None


def test_active_entries_go_when_the_queue_moves() -> None:
    cache = _live_cache()
    cache.put("busy", ACTIVE, cache.token())
    assert cache.get("busy") is ACTIVE
    cache.heard(change("someone_else", queue_moved=False))  # e.g. a profile, or a NOT_FOUND
    assert cache.get("busy") is ACTIVE
    cache.heard(change("someone_else", queue_moved=True))
    assert cache.get("busy") is None


def test_a_reading_taken_before_a_change_is_not_stored() -> None:
    cache = _live_cache()
    token = cache.token()
    cache.heard(change("done", queue_moved=False))  # arrives while the read was in flight
    cache.put("done", DONE, token)
    assert cache.get("done") is None


def test_a_numbered_reading_is_stored_unless_its_own_later_change_was_heard_meanwhile() -> None:
    numbered = Reading(DONE.document, None, False, seq=50)
    cases = [
        ([Change(0, 51, "someone_else", 1, True, ())], True),  # others' changes: not in the document
        ([Change(0, 50, "done", 1, False)], True),  # its own, already in the reading (number 50)
        ([Change(0, 51, "done", 1, False)], False),  # its own, after the reading: it is stale
        ([Change(0, 51, None, 0, True, None)], False),  # a move not listed
    ]
    for heard, stored in cases:
        cache = _live_cache()
        token = cache.token()
        for line in heard:
            cache.heard(line)
        cache.put("done", numbered, token)
        assert (cache.get("done") is numbered) is stored, heard
    cache = _live_cache()
    token = cache.token()
    for seq in range(51, 51 + RECENT_CHANGES + 1):  # more than it remembers: it cannot tell
        cache.heard(Change(0, seq, "someone_else", 1, False))
    cache.put("done", numbered, token)
    assert cache.get("done") is None


def test_unchecked_counters_or_a_lost_subscription_turn_it_off() -> None:
    cache = _live_cache()
    cache.put("done", DONE, cache.token())
    with mock.patch("api.cache.time.monotonic", return_value=10**9):
        assert cache.get("done") is None
    assert MAX_UNCHECKED_S <= 1.0  # the contract's freshness bound
    cache.suspend()
    assert cache.get("done") is None
    cache.check([0], cache.mark())
    assert cache.get("done") is DONE
    cache.reset(connected=False)
    assert cache.get("done") is None


def test_a_number_the_counter_passed_but_never_heard_empties_it() -> None:
    cache = LocalCache()
    cache.reset(connected=True)
    cache.check([5, 0], cache.mark())
    cache.put("done", DONE, cache.token())
    cache.heard(change("x", shard=0, seq=6))
    assert not cache.check([7, 0], cache.mark())  # 7 may still be on its way
    assert cache.get("done") is DONE
    assert cache.check([7, 0], cache.mark())  # still unheard a check later: lost
    assert cache.get("done") is None


def test_numbers_heard_out_of_order_count_once_all_arrived() -> None:
    cache = LocalCache()
    cache.reset(connected=True)
    cache.check([0, 10], cache.mark())
    cache.put("done", DONE, cache.token())
    for seq in (13, 11, 12):  # a cluster's concurrent writers publish out of order
        cache.heard(change("x", shard=1, seq=seq))
    assert not cache.check([0, 13], cache.mark()) and not cache.check([0, 13], cache.mark())
    assert cache.get("done") is DONE


def test_a_counter_read_while_messages_arrive_is_no_loss() -> None:
    cache = LocalCache()
    cache.reset(connected=True)
    cache.heard(change("x", seq=4))  # heard before the first check: counted with it
    cache.check([3], cache.mark())
    assert cache.get("done") is None
    cache.put("done", DONE, cache.token())
    mark = cache.mark()  # the read is asked for now...
    cache.heard(change("x", seq=5))  # ...a message arrives meanwhile...
    assert not cache.check([4], mark)  # ...so the counter is older than what was heard: no loss
    cache.heard(change("x", seq=6))
    assert not cache.check([6], cache.mark()) and not cache.check([6], cache.mark())
    assert cache.get("done") is DONE


def test_after_a_loss_numbers_heard_beyond_the_counter_still_count() -> None:
    cache = _live_cache()
    cache.heard(change("x", seq=2))  # 1 never arrives
    cache.check([2], cache.mark())
    mark = cache.mark()
    cache.heard(change("x", seq=3))
    assert cache.check([2], mark)  # 1 was lost: emptied
    cache.put("done", DONE, cache.token())
    cache.heard(change("x", seq=4))
    assert not cache.check([4], cache.mark()) and not cache.check([4], cache.mark())  # 3 was heard, before
    assert cache.get("done") is DONE


def test_a_counter_going_backwards_empties_it() -> None:
    cache = LocalCache()
    cache.reset(connected=True)
    cache.check([9], cache.mark())
    cache.put("done", DONE, cache.token())
    assert cache.check([3], cache.mark())  # a flushed or rolled-back Redis
    assert cache.get("done") is None
    cache.put("done", DONE, cache.token())
    assert not cache.check([3], cache.mark()) and cache.get("done") is DONE


def test_misses_are_not_cached_and_size_is_bounded() -> None:
    cache = _live_cache()
    cache.put("nobody", Reading(None, None, False), cache.token())
    assert cache.get("nobody") is None
    small = LocalCache(max_entries=2)
    small.reset(connected=True)
    small.check([0], small.mark())
    for name in ("a", "b", "c"):
        small.put(name, DONE, small.token())
    assert small.get("a") is None and small.get("c") is DONE
