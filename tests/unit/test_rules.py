"""The status rules (rows -> document), as docs/api.md and docs/architecture.md describe them.

Which row answers ("The username has a row in `primary_profiles`"; "Else its
**most recent** `queue` row decides (greatest `timestamp`; NULL timestamps are
oldest; ties broken by greater `created_at`, then greater `id`)"), the queue
order ("HIGH, then MEDIUM, then LOW (any other priority ranks with LOW, as in
the seed), then earlier `timestamp`, then smaller `id`"), counting "every row
with status PENDING or PROCESSING, whoever it belongs to", and the document's
version and digest.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID

import pytest

from shared.model.document import State, StatusDocument
from shared.model.rows import ProfileRow, QueueRow
from shared.model.rules import (
    QueuePosition,
    active_members,
    answering_profile,
    latest_queue_row,
    position_among,
    priority_rank,
    project,
    queue_member,
    snapshot_version,
)

T0 = datetime(2024, 1, 15, 14, 0, 0, tzinfo=UTC)
PROJECTED_AT = datetime(2024, 1, 15, 15, 0, 0, tzinfo=UTC)
IST = timezone(timedelta(hours=5, minutes=30))
PST = timezone(timedelta(hours=-8))


def uid(n: int) -> UUID:
    return UUID(int=n)


def qrow(
    n: int = 1,
    *,
    username: str = "mike_1",
    status: str | None = "PENDING",
    priority: str | None = "HIGH",
    timestamp: datetime | None = T0,
    last_attempt: datetime | None = None,
    attempts: int | None = 0,
    error_message: str | None = None,
    request_id: str | None = None,
    created_at: datetime | None = T0,
) -> QueueRow:
    return QueueRow(
        id=uid(n),
        username=username,
        status=status,
        priority=priority,
        timestamp=timestamp,
        last_attempt=last_attempt,
        attempts=attempts,
        error_message=error_message,
        request_id=request_id if request_id is not None else f"req-{n}",
        created_at=created_at,
    )


def prow(
    n: int = 1,
    *,
    username: str = "mike_1",
    created_at: datetime | None = T0,
    updated_at: datetime | None = T0,
    last_scraped_at: datetime | None = T0,
    followers_count: int | None = 100,
    posts_count: int | None = 10,
) -> ProfileRow:
    return ProfileRow(
        id=uid(n),
        username=username,
        created_at=created_at,
        updated_at=updated_at,
        last_scraped_at=last_scraped_at,
        followers_count=followers_count,
        posts_count=posts_count,
    )


def doc_for(
    username: str = "mike_1",
    profiles: list[ProfileRow] | None = None,
    rows: list[QueueRow] | None = None,
    *,
    version: int = 1,
    projected_at: datetime = PROJECTED_AT,
) -> StatusDocument:
    return project(username, profiles or [], rows or [], version=version, projected_at=projected_at)


def ahead_of(rows: list[QueueRow], target: QueueRow) -> QueuePosition:
    return position_among(queue_member(target), active_members(rows))


# --------------------------------------------------------------------------- latest queue row


def test_latest_queue_row_of_nothing_is_none() -> None:
    assert latest_queue_row([]) is None


@pytest.mark.parametrize(
    ("rows", "expected_id"),
    [
        # greatest timestamp wins, whatever the list order
        ([qrow(1, timestamp=T0), qrow(2, timestamp=T0 + timedelta(seconds=1))], 2),
        ([qrow(2, timestamp=T0 + timedelta(seconds=1)), qrow(1, timestamp=T0)], 2),
        ([qrow(9, timestamp=T0), qrow(1, timestamp=T0 + timedelta(microseconds=1))], 1),
        # NULL timestamps are the oldest
        ([qrow(1, timestamp=None), qrow(2, timestamp=T0 - timedelta(days=3650))], 2),
        ([qrow(2, timestamp=T0 - timedelta(days=3650)), qrow(1, timestamp=None)], 2),
        ([qrow(1, timestamp=None), qrow(2, timestamp=datetime(1960, 1, 1, tzinfo=UTC))], 2),
        ([qrow(2, timestamp=datetime(1, 1, 2, tzinfo=UTC)), qrow(1, timestamp=None)], 2),
        # only NULL timestamps: created_at then id decide
        (
            [
                qrow(1, timestamp=None, created_at=T0 + timedelta(seconds=5)),
                qrow(2, timestamp=None, created_at=T0),
            ],
            1,
        ),
        ([qrow(1, timestamp=None), qrow(2, timestamp=None)], 2),
        # equal timestamps: the greater created_at
        (
            [
                qrow(5, timestamp=T0, created_at=T0 + timedelta(seconds=2)),
                qrow(7, timestamp=T0, created_at=T0 + timedelta(seconds=1)),
            ],
            5,
        ),
        (
            [
                qrow(7, timestamp=T0, created_at=T0 + timedelta(seconds=1)),
                qrow(5, timestamp=T0, created_at=T0 + timedelta(seconds=2)),
            ],
            5,
        ),
        # equal timestamps and created_at: the greater id
        ([qrow(3, timestamp=T0, created_at=T0), qrow(4, timestamp=T0, created_at=T0)], 4),
        ([qrow(4, timestamp=T0, created_at=T0), qrow(3, timestamp=T0, created_at=T0)], 4),
        # a later timestamp beats a later created_at and a greater id
        (
            [
                qrow(100, timestamp=T0, created_at=T0 + timedelta(days=1)),
                qrow(1, timestamp=T0 + timedelta(seconds=1), created_at=T0),
            ],
            1,
        ),
        # instants compare across UTC offsets: 19:00+05:30 is 13:30Z, before 14:00Z
        (
            [
                qrow(1, timestamp=datetime(2024, 1, 15, 19, 0, tzinfo=IST)),
                qrow(2, timestamp=T0),
            ],
            2,
        ),
        # 06:30-08:00 is 14:30Z, after 14:00Z
        (
            [
                qrow(1, timestamp=datetime(2024, 1, 15, 6, 30, tzinfo=PST)),
                qrow(2, timestamp=T0),
            ],
            1,
        ),
        # the same instant in two offsets is a tie, then created_at decides
        (
            [
                qrow(1, timestamp=datetime(2024, 1, 15, 19, 30, tzinfo=IST), created_at=T0 + timedelta(1)),
                qrow(2, timestamp=T0, created_at=T0),
            ],
            1,
        ),
        # a single row
        ([qrow(42, status="FAILED")], 42),
    ],
)
def test_latest_queue_row(rows: list[QueueRow], expected_id: int) -> None:
    latest = latest_queue_row(rows)
    assert latest is not None
    assert latest.id == uid(expected_id)


def test_latest_queue_row_ignores_status_and_priority() -> None:
    rows = [
        qrow(1, status="PROCESSING", priority="HIGH", timestamp=T0),
        qrow(2, status="FAILED", priority="LOW", timestamp=T0 + timedelta(minutes=1)),
        qrow(3, status="COMPLETED", priority="MEDIUM", timestamp=T0 - timedelta(minutes=1)),
    ]
    assert latest_queue_row(rows) == rows[1]


def test_latest_of_many_rows_in_mixed_case_decides_the_document() -> None:
    rows = [
        qrow(1, username="Mike_1", status="COMPLETED", timestamp=T0),
        qrow(2, username="MIKE_1", status="FAILED", timestamp=T0 + timedelta(minutes=2), attempts=3),
        qrow(3, username="mike_1", status="PENDING", timestamp=T0 + timedelta(minutes=1)),
        qrow(4, username="mIkE_1", status="PROCESSING", timestamp=None),
    ]
    doc = doc_for("mike_1", rows=rows)
    assert doc.state is State.QUEUED
    assert doc.username == "mike_1"
    assert doc.queue is not None
    assert doc.queue.id == str(uid(2))
    assert doc.queue.status == "FAILED"
    assert doc.queue.attempts == 3
    assert doc.queue.request_id == "req-2"


# --------------------------------------------------------------------------- answering profile


def test_answering_profile_of_nothing_is_none() -> None:
    assert answering_profile([]) is None


@pytest.mark.parametrize("order", [0, 1])
def test_two_profiles_differing_in_case_most_recently_updated_answers(order: int) -> None:
    older = prow(1, username="Mike_1", updated_at=T0, followers_count=1)
    newer = prow(2, username="mike_1", updated_at=T0 + timedelta(seconds=1), followers_count=2)
    rows = [older, newer] if order == 0 else [newer, older]
    assert answering_profile(rows) == newer
    doc = doc_for("mike_1", profiles=rows)
    assert doc.profile is not None
    assert doc.profile.followers_count == 2


def test_answering_profile_null_updated_at_is_least_recent() -> None:
    undated = prow(1, username="MIKE_1", updated_at=None, followers_count=1)
    dated = prow(2, username="mike_1", updated_at=T0 - timedelta(days=1000), followers_count=2)
    assert answering_profile([undated, dated]) == dated
    assert answering_profile([dated, undated]) == dated
    ancient = prow(3, username="Mike_1", updated_at=datetime(1950, 1, 1, tzinfo=UTC), followers_count=3)
    assert answering_profile([undated, ancient]) == ancient
    assert answering_profile([ancient, undated]) == ancient


def test_answering_profile_compares_instants_across_offsets() -> None:
    # 19:00+05:30 == 13:30Z, earlier than 14:00Z
    a = prow(1, updated_at=datetime(2024, 1, 15, 19, 0, tzinfo=IST), followers_count=1)
    b = prow(2, updated_at=T0, followers_count=2)
    assert answering_profile([a, b]) == b
    assert answering_profile([b, a]) == b


def test_profile_row_in_other_case_answers_for_normalized_name() -> None:
    doc = doc_for("mike_1", profiles=[prow(1, username="Mike_1", followers_count=125000, posts_count=847)])
    assert doc.state is State.EXISTS
    assert doc.username == "mike_1"
    assert doc.profile is not None
    assert doc.profile.followers_count == 125000
    assert doc.profile.posts_count == 847


# --------------------------------------------------------------------------- project: the three branches


def test_profile_row_wins_over_any_queue_row() -> None:
    rows = [qrow(1, status="PROCESSING", last_attempt=T0), qrow(2, status="FAILED", timestamp=T0 + timedelta(1))]
    doc = doc_for(profiles=[prow(1)], rows=rows)
    assert doc.state is State.EXISTS
    assert doc.profile is not None
    assert doc.queue is None


def test_no_rows_is_not_found() -> None:
    doc = doc_for("nobody")
    assert doc.state is State.NOT_FOUND
    assert doc.username == "nobody"
    assert doc.profile is None
    assert doc.queue is None


def test_queue_facts_copy_the_latest_row() -> None:
    last_attempt = T0 + timedelta(minutes=1)
    row = qrow(
        7,
        status="FAILED",
        priority="MEDIUM",
        timestamp=T0,
        last_attempt=last_attempt,
        attempts=2,
        error_message="Instagram profile not accessible - may be private",
        request_id="c2d8e5f1",
    )
    doc = doc_for(rows=[row])
    assert doc.state is State.QUEUED
    q = doc.queue
    assert q is not None
    assert q.id == str(uid(7))
    assert q.status == "FAILED"
    assert q.priority == "MEDIUM"
    assert q.timestamp == T0
    assert q.last_attempt == last_attempt
    assert q.attempts == 2
    assert q.error_message == "Instagram profile not accessible - may be private"
    assert q.request_id == "c2d8e5f1"
    assert q.queue_member is None  # FAILED holds no place in the queue


def test_null_attempts_counts_as_zero() -> None:
    doc = doc_for(rows=[qrow(1, status="FAILED", attempts=None, last_attempt=T0)])
    assert doc.queue is not None
    assert doc.queue.attempts == 0


def test_null_priority_and_unknown_status_are_kept() -> None:
    doc = doc_for(rows=[qrow(1, status="On_Hold", priority=None)])
    assert doc.queue is not None
    assert doc.queue.status == "On_Hold"
    assert doc.queue.priority is None
    assert doc.queue.queue_member is None  # not PENDING or PROCESSING


@pytest.mark.parametrize("status", ["PENDING", "PROCESSING"])
def test_active_latest_row_has_its_queue_member(status: str) -> None:
    row = qrow(3, status=status, priority="LOW", timestamp=T0)
    doc = doc_for(rows=[row])
    assert doc.queue is not None
    assert doc.queue.queue_member == queue_member(row)


@pytest.mark.parametrize("status", ["COMPLETED", "FAILED", "CANCELLED", "pending", None])
def test_inactive_latest_row_has_no_queue_member(status: str | None) -> None:
    doc = doc_for(rows=[qrow(3, status=status)])
    assert doc.queue is not None
    assert doc.queue.queue_member is None


def test_version_and_projected_at_are_recorded() -> None:
    doc = doc_for(rows=[qrow(1)], version=12345, projected_at=PROJECTED_AT)
    assert doc.version == 12345
    assert doc.projected_at == PROJECTED_AT
    assert doc.schema_version == 1


# --------------------------------------------------------------------------- queue order


@pytest.mark.parametrize(
    ("first", "second"),
    [
        # priority first, whatever the timestamps
        (qrow(9, priority="HIGH", timestamp=T0 + timedelta(days=1)), qrow(1, priority="MEDIUM", timestamp=T0)),
        (qrow(9, priority="MEDIUM", timestamp=T0 + timedelta(days=1)), qrow(1, priority="LOW", timestamp=T0)),
        (qrow(9, priority="HIGH", timestamp=T0 + timedelta(days=1)), qrow(1, priority="LOW", timestamp=T0)),
        # unknown / NULL / lower-case priorities rank with LOW
        (qrow(9, priority="MEDIUM", timestamp=T0 + timedelta(days=1)), qrow(1, priority=None, timestamp=T0)),
        (qrow(9, priority="MEDIUM", timestamp=T0 + timedelta(days=1)), qrow(1, priority="URGENT", timestamp=T0)),
        (qrow(9, priority="MEDIUM", timestamp=T0 + timedelta(days=1)), qrow(1, priority="high", timestamp=T0)),
        (qrow(9, priority="LOW", timestamp=T0), qrow(1, priority=None, timestamp=T0 + timedelta(seconds=1))),
        (qrow(9, priority=None, timestamp=T0), qrow(1, priority="LOW", timestamp=T0 + timedelta(seconds=1))),
        (qrow(9, priority="URGENT", timestamp=T0), qrow(1, priority="LOW", timestamp=T0 + timedelta(seconds=1))),
        (qrow(9, priority="", timestamp=T0), qrow(1, priority="LOW", timestamp=T0 + timedelta(microseconds=1))),
        # same priority: earlier timestamp
        (qrow(9, priority="HIGH", timestamp=T0), qrow(1, priority="HIGH", timestamp=T0 + timedelta(microseconds=1))),
        (qrow(9, priority="LOW", timestamp=T0 - timedelta(days=400)), qrow(1, priority="LOW", timestamp=T0)),
        # before 1970 and far in the future still order correctly
        (
            qrow(9, priority="LOW", timestamp=datetime(1960, 1, 1, tzinfo=UTC)),
            qrow(1, priority="LOW", timestamp=datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)),
        ),
        (
            qrow(9, priority="LOW", timestamp=datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)),
            qrow(1, priority="LOW", timestamp=datetime(1970, 1, 1, tzinfo=UTC)),
        ),
        (
            qrow(9, priority="LOW", timestamp=datetime(2999, 1, 1, tzinfo=UTC)),
            qrow(1, priority="LOW", timestamp=datetime(9999, 1, 1, tzinfo=UTC)),
        ),
        # the timestamp's instant counts, not its wall-clock text: 19:00+05:30 is 13:30Z
        (
            qrow(9, priority="MEDIUM", timestamp=datetime(2024, 1, 15, 19, 0, tzinfo=IST)),
            qrow(1, priority="MEDIUM", timestamp=T0),
        ),
        (
            qrow(9, priority="MEDIUM", timestamp=T0),
            qrow(1, priority="MEDIUM", timestamp=datetime(2024, 1, 15, 6, 30, tzinfo=PST)),
        ),
        # equal priority and timestamp: smaller id first
        (qrow(1, priority="HIGH", timestamp=T0), qrow(2, priority="HIGH", timestamp=T0)),
        (qrow(2, priority="LOW", timestamp=T0), qrow(10, priority="LOW", timestamp=T0)),
        (qrow(0xFF, priority="LOW", timestamp=T0), qrow(0x100, priority="LOW", timestamp=T0)),
        (qrow(2**64, priority=None, timestamp=T0), qrow(2**127, priority="LOW", timestamp=T0)),
        (
            qrow(1, priority="MEDIUM", timestamp=datetime(2024, 1, 15, 19, 30, tzinfo=IST)),
            qrow(2, priority="MEDIUM", timestamp=T0),
        ),
    ],
)
def test_queue_order(first: QueueRow, second: QueueRow) -> None:
    assert queue_member(first) < queue_member(second)
    rows = [second, first]
    assert ahead_of(rows, first) == QueuePosition(ahead=0, total=2)
    assert ahead_of(rows, second) == QueuePosition(ahead=1, total=2)
    assert active_members(rows) == [queue_member(first), queue_member(second)]


@pytest.mark.parametrize(
    ("priority", "rank"),
    [("HIGH", 0), ("MEDIUM", 1), ("LOW", 2), (None, 2), ("", 2), ("URGENT", 2), ("high", 2), ("Medium", 2)],
)
def test_priority_rank(priority: str | None, rank: int) -> None:
    # HIGH < MEDIUM < LOW, everything else equal to LOW
    assert priority_rank(priority) == priority_rank({0: "HIGH", 1: "MEDIUM", 2: "LOW"}[rank])
    assert priority_rank("HIGH") < priority_rank("MEDIUM") < priority_rank("LOW")


def test_active_members_keep_only_pending_and_processing_rows() -> None:
    rows = [
        qrow(1, status="PENDING"),
        qrow(2, status="PROCESSING"),
        qrow(3, status="COMPLETED"),
        qrow(4, status="FAILED"),
        qrow(5, status="UNKNOWN_THING"),
        qrow(6, status=None),
        qrow(7, status="PROCESSING", priority="LOW"),
    ]
    members = active_members(rows)
    assert members == sorted(queue_member(r) for r in (rows[0], rows[1], rows[6]))
    assert members == sorted(members)


def test_position_counts_active_rows_of_everyone() -> None:
    t = T0
    everyone = [
        # ahead of target (HIGH, earlier)
        qrow(10, username="alice", status="PENDING", priority="HIGH", timestamp=t - timedelta(minutes=5)),
        qrow(11, username="bob", status="PROCESSING", priority="HIGH", timestamp=t - timedelta(minutes=9)),
        # ahead: MEDIUM, any time
        qrow(12, username="carol", status="PENDING", priority="MEDIUM", timestamp=t + timedelta(hours=2)),
        # ahead: the target's own older active row (rows are counted, not usernames)
        qrow(13, username="Mike_1", status="PENDING", priority="LOW", timestamp=t - timedelta(minutes=1)),
        # ahead: unknown priority ranks with LOW, earlier timestamp
        qrow(14, username="dave", status="PENDING", priority="WHATEVER", timestamp=t - timedelta(seconds=1)),
        # ahead: same priority and timestamp, smaller id
        qrow(15, username="erin", status="PENDING", priority="LOW", timestamp=t),
        # behind: same priority and timestamp, greater id
        qrow(30, username="frank", status="PENDING", priority="LOW", timestamp=t),
        # behind: NULL priority, later
        qrow(31, username="gina", status="PENDING", priority=None, timestamp=t + timedelta(seconds=1)),
        # not counted at all: not active
        qrow(40, username="hank", status="COMPLETED", priority="HIGH", timestamp=t - timedelta(days=1)),
        qrow(41, username="ivy", status="FAILED", priority="HIGH", timestamp=t - timedelta(days=1)),
        qrow(42, username="mike_1", status="FAILED", priority="HIGH", timestamp=t - timedelta(days=1)),
        qrow(43, username="jack", status="weird", priority="HIGH", timestamp=t - timedelta(days=1)),
    ]
    target = qrow(20, username="MIKE_1", status="PENDING", priority="LOW", timestamp=t)
    everyone.append(target)
    position = ahead_of(everyone, target)
    assert position == QueuePosition(ahead=6, total=9)


def test_position_via_the_projected_document() -> None:
    mine = [
        qrow(1, username="mike_1", status="FAILED", timestamp=T0 - timedelta(hours=1)),
        qrow(2, username="Mike_1", status="PENDING", priority="MEDIUM", timestamp=T0),
    ]
    others = [
        qrow(3, username="a", status="PENDING", priority="HIGH", timestamp=T0 + timedelta(hours=1)),
        qrow(4, username="b", status="PENDING", priority="MEDIUM", timestamp=T0 + timedelta(seconds=1)),
        qrow(5, username="c", status="PROCESSING", priority="MEDIUM", timestamp=T0 - timedelta(seconds=1)),
    ]
    doc = doc_for("mike_1", rows=mine)
    assert doc.queue is not None and doc.queue.queue_member is not None
    assert position_among(doc.queue.queue_member, active_members(mine + others)) == QueuePosition(2, 4)


def test_position_among_an_empty_queue() -> None:
    member = queue_member(qrow(1))
    assert position_among(member, []) == QueuePosition(ahead=0, total=0)
    assert position_among(member, [member]) == QueuePosition(ahead=0, total=1)


def test_position_among_accepts_any_iterable() -> None:
    rows = [qrow(i, timestamp=T0 + timedelta(seconds=i)) for i in range(1, 6)]
    members = active_members(rows)
    assert position_among(members[3], iter(members)) == QueuePosition(ahead=3, total=5)


def test_position_is_independent_of_row_order() -> None:
    rows = [
        qrow(1, priority="LOW", timestamp=T0),
        qrow(2, priority="HIGH", timestamp=T0 + timedelta(minutes=3)),
        qrow(3, priority=None, timestamp=T0 - timedelta(minutes=3)),
        qrow(4, priority="MEDIUM", timestamp=T0),
        qrow(5, priority="HIGH", timestamp=T0 + timedelta(minutes=3)),
    ]
    expected_order = [2, 5, 4, 3, 1]
    for perm in itertools.permutations(rows):
        members = active_members(list(perm))
        for ahead, n in enumerate(expected_order):
            assert position_among(queue_member(rows[n - 1]), members) == QueuePosition(ahead, 5)


# --------------------------------------------------------------------------- snapshot version


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        # larger xmax wins, whatever the in-progress counts
        ((100, 0), (101, 0)),
        ((100, 0), (101, 1)),
        ((100, 0), (101, 500)),
        ((100, 0), (101, 65535)),
        ((100, 3), (200, 3)),
        ((1, 0), (2**32, 0)),
        ((2**32, 0), (2**32 + 1, 100)),
        # same xmax, fewer in progress wins
        ((100, 1), (100, 0)),
        ((100, 5), (100, 3)),
        ((100, 1001), (100, 1000)),
        ((2**40, 7), (2**40, 6)),
    ],
)
def test_snapshot_version_is_monotonic(older: tuple[int, int], newer: tuple[int, int]) -> None:
    assert snapshot_version(*older) < snapshot_version(*newer)


@pytest.mark.parametrize("snapshot", [(1, 0), (100, 5), (2**40, 0)])
def test_snapshot_version_is_deterministic(snapshot: tuple[int, int]) -> None:
    assert snapshot_version(*snapshot) == snapshot_version(*snapshot)
    assert isinstance(snapshot_version(*snapshot), int)


def test_snapshot_version_orders_a_sequence_of_snapshots() -> None:
    snapshots = [(100, 4), (100, 2), (100, 0), (101, 9), (101, 1), (150, 30), (151, 0)]
    versions = [snapshot_version(x, n) for x, n in snapshots]
    assert versions == sorted(versions)
    assert len(set(versions)) == len(versions)


# --------------------------------------------------------------------------- digest


def _queued_doc(**changes: object) -> StatusDocument:
    base = dict(
        status="PROCESSING",
        priority="HIGH",
        timestamp=T0,
        last_attempt=T0 + timedelta(minutes=1),
        attempts=1,
        error_message=None,
        request_id="a7b3c9d2",
    )
    n = int(changes.pop("n", 1))  # type: ignore[call-overload]
    username = str(changes.pop("username", "mike_1"))
    base.update(changes)
    return doc_for(username, rows=[qrow(n, **base)])  # type: ignore[arg-type]


def _profile_doc(**changes: object) -> StatusDocument:
    base = dict(
        created_at=T0,
        last_scraped_at=T0 + timedelta(minutes=5),
        followers_count=125000,
        posts_count=847,
    )
    username = str(changes.pop("username", "mike_1"))
    base.update(changes)
    return doc_for(username, profiles=[prow(1, **base)])  # type: ignore[arg-type]


def test_equal_facts_give_equal_digest() -> None:
    assert _queued_doc().digest == _queued_doc().digest
    assert _profile_doc().digest == _profile_doc().digest
    assert doc_for("ghost").digest == doc_for("ghost").digest


def test_digest_ignores_version_and_projection_time() -> None:
    a = doc_for(rows=[qrow(1)], version=1, projected_at=PROJECTED_AT)
    b = doc_for(rows=[qrow(1)], version=999, projected_at=PROJECTED_AT + timedelta(hours=5))
    assert a.digest == b.digest
    a = doc_for(profiles=[prow(1)], version=1, projected_at=PROJECTED_AT)
    b = doc_for(profiles=[prow(1)], version=2, projected_at=PROJECTED_AT + timedelta(days=1))
    assert a.digest == b.digest


def test_digest_ignores_columns_the_status_does_not_show() -> None:
    # the profile row's id/updated_at and the row's spelling of the name are not facts of the status
    a = doc_for(profiles=[prow(1, username="Mike_1", updated_at=T0)])
    b = doc_for(profiles=[prow(2, username="mike_1", updated_at=T0 + timedelta(hours=1))])
    assert a.digest == b.digest


def test_digest_of_same_instant_in_another_offset_is_equal() -> None:
    # Postgres hands out a TIMESTAMPTZ in the session's time zone; the fact is the instant.
    a = _queued_doc(timestamp=T0, last_attempt=T0 + timedelta(minutes=1))
    b = _queued_doc(
        timestamp=T0.astimezone(IST), last_attempt=(T0 + timedelta(minutes=1)).astimezone(PST)
    )
    assert a.digest == b.digest
    c = _profile_doc(created_at=T0)
    d = _profile_doc(created_at=T0.astimezone(IST))
    assert c.digest == d.digest


@pytest.mark.parametrize(
    "change",
    [
        {"status": "PENDING"},
        {"status": "FAILED"},
        {"status": "processing"},
        {"priority": "MEDIUM"},
        {"priority": None},
        {"attempts": 2},
        {"error_message": "boom"},
        {"request_id": "other"},
        {"request_id": None},
        {"timestamp": T0 + timedelta(microseconds=1)},
        {"timestamp": None},
        {"last_attempt": T0 + timedelta(minutes=1, microseconds=1)},
        {"last_attempt": None},
        {"n": 2},
        {"username": "mike_2"},
    ],
)
def test_any_queue_fact_change_changes_digest(change: dict[str, object]) -> None:
    assert _queued_doc(**change).digest != _queued_doc().digest


@pytest.mark.parametrize(
    "change",
    [
        {"created_at": T0 + timedelta(seconds=1)},
        {"created_at": None},
        {"last_scraped_at": T0},
        {"last_scraped_at": None},
        {"followers_count": 125001},
        {"followers_count": None},
        {"posts_count": 0},
        {"posts_count": None},
        {"username": "mike_2"},
    ],
)
def test_any_profile_fact_change_changes_digest(change: dict[str, object]) -> None:
    assert _profile_doc(**change).digest != _profile_doc().digest


def test_digest_differs_between_branches() -> None:
    digests = {_profile_doc().digest, _queued_doc().digest, doc_for("mike_1").digest}
    assert len(digests) == 3
    assert doc_for("mike_1").digest != doc_for("mike_2").digest


# --------------------------------------------------------------------------- JSON round trip


@pytest.mark.parametrize(
    "doc",
    [
        _profile_doc(),
        _profile_doc(created_at=None, last_scraped_at=None, followers_count=None, posts_count=None),
        _profile_doc(created_at=datetime(2024, 1, 15, 19, 30, 0, 123456, tzinfo=IST)),
        _queued_doc(),
        _queued_doc(status="PENDING", last_attempt=None, priority=None, request_id=None),
        _queued_doc(status="FAILED", attempts=None, error_message="Ünïcödé 💥 \"quoted\"\n"),
        _queued_doc(status="Weird", timestamp=None),
        _queued_doc(timestamp=datetime(2024, 1, 15, 6, 30, 0, 1, tzinfo=PST)),
        doc_for("ghost", version=2**50),
    ],
)
def test_document_json_round_trip(doc: StatusDocument) -> None:
    again = StatusDocument.model_validate_json(doc.model_dump_json())
    assert again == doc
    assert again.digest == doc.digest
    assert again.model_dump_json() == doc.model_dump_json()
