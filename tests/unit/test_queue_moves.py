"""Held positions shifted by the queue moves heard equal the positions Redis would count."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from api.cache import MAX_REPLAY, LocalCache, QueueMoves
from shared.model.queue_entry import encode, owner_tag, time_key
from shared.model.rows import QueueRow
from shared.model.rules import QueuePosition, project_with_members
from shared.redis_store.reader import Reading
from shared.redis_store.records import Change

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _entry(rank: int, us: int, running: bool = False) -> str:
    return encode(rank, time_key(datetime.fromtimestamp(us / 1e6, UTC)), str(uuid.uuid4()), owner_tag("x"), running)


def _flipped(entry: str) -> str:
    return entry[:-1] + ("R" if entry.endswith("P") else "P")


def _truth(queue: set[str], member: str) -> QueuePosition:
    return QueuePosition(ahead=sum(e < member for e in queue), total=len(queue))


# One change's effect on the sets, as write_rules.lua reports it: ("add", rank, time), ("remove", i),
# ("flip", i) where i picks an entry other than the followed one.
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 2), st.integers(0, 10**6)),
        st.tuples(st.just("remove"), st.integers(0, 10**6)),
        st.tuples(st.just("flip"), st.integers(0, 10**6)),
        st.tuples(st.just("both"), st.integers(0, 10**6), st.integers(0, 2)),  # one row leaves, another comes
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(
    start=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 10**6), st.booleans()), min_size=0, max_size=30),
    follow=st.tuples(st.integers(0, 2), st.integers(0, 10**6)),
    ops=_OPS,
    lines_per_message=st.integers(1, 5),
)
def test_a_shifted_position_is_the_position_redis_would_count(
    start: list[tuple[int, int, bool]],
    follow: tuple[int, int],
    ops: list[tuple],  # type: ignore[type-arg]
    lines_per_message: int,
) -> None:
    queue = {_entry(r, t, running) for r, t, running in start}
    member = _entry(*follow)
    queue.add(member)
    held = _truth(queue, member)
    moves = QueueMoves()
    for i, op in enumerate(ops):
        seq = 1 + i // lines_per_message  # a batch's message has a line per username, all under one number
        others = sorted(queue - {member})
        taken: list[str] = []
        if op[0] == "add":
            added = _entry(op[1], op[2], running=seq % 2 == 0)
            taken.append("+" + added)
            queue.add(added)
        elif others and op[0] in ("remove", "flip", "both"):
            gone = others[op[1] % len(others)]
            queue.discard(gone)
            taken.append("-" + gone)
            if op[0] == "flip":
                queue.add(_flipped(gone))
                taken.append("+" + _flipped(gone))
            elif op[0] == "both":
                added = _entry(op[2], op[1])
                queue.add(added)
                taken.append("+" + added)
        assert moves.note(seq, tuple(taken))
        assert moves.shift(member, held, since=0) == _truth(queue, member)


def test_a_job_picked_up_or_put_back_moves_nobody_and_is_not_kept() -> None:
    moves = QueueMoves()
    entry = _entry(1, 5)
    for seq in range(1, 2 * MAX_REPLAY):  # more flips than a held position is ever shifted by
        assert moves.note(seq, ("-" + entry, "+" + _flipped(entry)))
        entry = _flipped(entry)
    assert moves.shift(_entry(2, 1), QueuePosition(4, 9), since=0) == QueuePosition(4, 9)
    assert moves.floor == 0 and moves.newest == 2 * MAX_REPLAY - 1


def test_positions_that_cannot_be_told_are_none() -> None:
    moves = QueueMoves(kept=4)
    ahead, member = _entry(0, 1), _entry(1, 1)
    for seq in range(1, 7):  # six moves, four kept: the first two are forgotten
        assert moves.note(seq, ("+" + _entry(2, seq),))
    assert moves.shift(member, QueuePosition(0, 1), since=1) is None  # read before moves it no longer has
    assert moves.shift(member, QueuePosition(0, 1), since=2) == QueuePosition(0, 5)
    assert not moves.note(5, ("+" + ahead,))  # out of order: the caller must drop what it holds
    assert moves.shift(member, QueuePosition(3, 3), since=6) == QueuePosition(3, 3)  # nothing after it
    assert moves.shift(member, QueuePosition(0, 1), since=5) == QueuePosition(0, 2)
    gone = QueueMoves()
    gone.note(1, ("-" + ahead,))
    assert gone.shift(member, QueuePosition(0, 1), since=0) is None  # no position is left: read it again


def test_too_many_moves_at_once_are_read_again() -> None:
    moves = QueueMoves()
    for seq in range(1, MAX_REPLAY + 2):
        moves.note(seq, ("+" + _entry(2, seq),))
    member = _entry(0, 0)
    assert moves.shift(member, QueuePosition(0, 1), since=0) is None
    assert moves.shift(member, QueuePosition(0, 1), since=1) == QueuePosition(0, 1 + MAX_REPLAY)


# --- the cache: entries with a change number are shifted, not dropped ---


def _active(username: str, rank_priority: str, seconds: int, seq: int, position: QueuePosition) -> Reading:
    row = QueueRow(
        uuid.uuid4(), username, "PENDING", rank_priority, datetime.fromtimestamp(seconds, UTC), None, 0, None, "r", NOW
    )
    doc = project_with_members(username, [], [row], version=1, projected_at=NOW)[0]
    return Reading(doc, position, False, seq)


def _live() -> LocalCache:
    cache = LocalCache()
    cache.reset(connected=True)
    cache.check([0], cache.mark())
    return cache


def test_a_held_position_follows_the_queue() -> None:
    cache = _live()
    reading = _active("amy", "MEDIUM", 1000, seq=10, position=QueuePosition(2, 5))
    cache.put("amy", reading, cache.token())
    behind, ahead = _entry(2, 5), _entry(0, 5)
    cache.heard(Change(0, 10, "bob", 1, True, ("+" + ahead,)))  # already in the reading (seq 10)
    assert cache.get("amy") is reading
    cache.heard(Change(0, 11, "bob", 2, True, ("-" + ahead, "+" + _flipped(ahead))))  # picked up: moves nobody
    cache.heard(Change(0, 12, "cat", 1, True, ("+" + behind,)))
    held = cache.get("amy")
    assert held is not None and held.position == QueuePosition(2, 6) and held.document is reading.document
    cache.heard(Change(0, 13, "cat", 2, True, ("-" + behind,)))
    cache.heard(Change(0, 14, "dan", 1, True, ("+" + _entry(1, 6),)))  # a MEDIUM job older than amy's
    held = cache.get("amy")
    assert held is not None and held.position == QueuePosition(3, 6)


def test_the_lines_of_one_message_shift_held_positions_together() -> None:
    cache = _live()
    reading = _active("amy", "MEDIUM", 1000, seq=10, position=QueuePosition(2, 5))
    cache.put("amy", reading, cache.token())
    # One batch of the projector: three usernames written, one change message (number 11).
    cache.heard(Change(0, 11, "bob", 1, True, ("+" + _entry(0, 5),)))
    cache.heard(Change(0, 11, "cat", 1, True, ("-" + _entry(1, 5), "+" + _entry(1, 5, running=True))))
    cache.heard(Change(0, 11, "dan", 1, True, ("+" + _entry(2, 5),)))
    held = cache.get("amy")
    assert held is not None and held.position == QueuePosition(3, 7)


def test_moves_not_listed_or_out_of_order_drop_held_positions() -> None:
    for line in (Change(0, 11, None, 0, True, None), Change(0, 9, "bob", 1, True, ("+" + _entry(0, 1),))):
        cache = _live()
        cache.heard(Change(0, 10, "zed", 1, True, ("+" + _entry(2, 9),)))
        reading = _active("amy", "HIGH", 1000, seq=10, position=QueuePosition(0, 2))
        cache.put("amy", reading, cache.token())
        assert cache.get("amy") is reading
        cache.heard(line)
        assert cache.get("amy") is None


def test_a_reading_without_a_change_number_is_dropped_by_any_move() -> None:
    cache = _live()
    reading = _active("amy", "HIGH", 1000, seq=10, position=QueuePosition(0, 2))
    reading = Reading(reading.document, reading.position, False, None)  # a cluster's reading
    cache.put("amy", reading, cache.token())
    cache.heard(Change(0, 11, "bob", 1, True, ()))
    assert cache.get("amy") is None
