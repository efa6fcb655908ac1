"""Bad data is data: every value the two tables can hold projects, renders and orders (contract section 5)."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.model.estimates import Estimates, MovingAverage
from shared.model.instants import (
    OutOfRange,
    degraded,
    epoch_us,
    expressible,
    parse_postgres,
)
from shared.model.queue_entry import QueueEntry, time_key, time_of_key
from shared.model.render import (
    duration_only_until,
    next_clock_change,
    render,
    unchanged_until,
)
from shared.model.rows import ProfileRow, QueueRow
from shared.model.rules import QueuePosition, latest_queue_row, project_with_members

_US = 1_000_000


@pytest.mark.parametrize(
    ("text", "expected_us"),
    [
        ("infinity", math.inf),
        ("-infinity", -math.inf),
        # Figures from Postgres' own extract(epoch ...); 1 BC is year 0 of the proleptic calendar.
        ("0001-12-31 00:00:00+00 BC", -62135683200000000),
        ("0001-12-31 19:00:00+00 BC", -62135614800000000),
        ("0001-02-29 00:00:00+00 BC", -62162121600000000),
        ("4713-01-01 00:00:00+00 BC", -210863520000000000),
        ("0044-03-15 12:00:00+05:53:28 BC", -63517802008000000),
        ("10000-01-01 04:59:59+00", 253402318799000000),
        ("294276-12-31 23:59:59+05:30", 9224317996199000000),
        ("294276-12-31 23:59:59.999999+00", 9224318015999999999),
        ("12345-06-07 08:09:10.5-03", 327416987350500000),
    ],
)
def test_postgres_texts_beyond_datetime_are_placed_exactly(text: str, expected_us: float) -> None:
    value = parse_postgres(text)
    assert isinstance(value, OutOfRange) and value.text == text
    assert value.epoch_us == expected_us


def test_parse_agrees_with_datetime_inside_its_range() -> None:
    for ts in (datetime(1, 1, 1, tzinfo=UTC), datetime(1970, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
               datetime(2024, 2, 29, 12, 30, 15, 250, tzinfo=UTC), datetime(1600, 3, 1, tzinfo=UTC)):
        assert parse_postgres(ts.strftime("%Y-%m-%d %H:%M:%S.%f+00")).epoch_us == epoch_us(ts)


@pytest.mark.parametrize("text", ["", "yesterday", "2024-13-01", "2024-01-01 25:00:00+00 AD"])
def test_anything_else_is_not_a_timestamp(text: str) -> None:
    with pytest.raises(ValueError):
        parse_postgres(text)


_IN_ORDER = [
    OutOfRange(-math.inf, "-infinity"),
    parse_postgres("4713-01-01 00:00:00+00 BC"),
    parse_postgres("0001-12-31 23:59:59.999999+00 BC"),
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2026, 12, 1, 10, tzinfo=timezone(timedelta(hours=14))),
    datetime(2026, 12, 1, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    parse_postgres("10000-01-01 00:00:00+00"),
    parse_postgres("294276-12-31 23:59:59.999999+00"),
    OutOfRange(math.inf, "infinity"),
]


def test_queue_entry_times_sort_like_the_instants() -> None:
    keys = [time_key(ts) for ts in _IN_ORDER]
    assert keys == sorted(keys)
    # -infinity sorts with NULL, as Postgres' COALESCE(timestamp, '-infinity') does; ties go to the id.
    assert time_key(None) == keys[0]
    assert len(set(keys[1:])) == len(keys) - 1
    assert time_of_key(keys[0]) is None and time_of_key(keys[-1]) is None
    assert time_of_key(time_key(datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC))) == _US


def test_the_latest_row_is_chosen_by_the_same_order() -> None:
    rows = [_queue_row(timestamp=ts) for ts in reversed(_IN_ORDER)] + [_queue_row(timestamp=None)]
    assert latest_queue_row(rows) is rows[0]  # the +infinity one
    assert latest_queue_row(rows[1:]) is rows[1]


def test_times_a_document_cannot_carry_become_null_and_count_as_degraded() -> None:
    assert expressible(OutOfRange(math.inf, "infinity")) is None
    assert expressible(datetime(9999, 12, 31, tzinfo=UTC)) is None  # too near the end to add a day to
    assert expressible(datetime(1, 1, 1, 3, tzinfo=timezone(timedelta(hours=5)))) is None  # year 0 in UTC
    assert expressible(datetime(2026, 1, 1, 5, tzinfo=timezone(timedelta(hours=5)))) == datetime(2026, 1, 1, tzinfo=UTC)
    assert degraded(parse_postgres("4713-01-01 00:00:00+00 BC")) and not degraded(None)


# ------------------------------------------------------------------ every value at once

_OFFSETS = st.integers(min_value=-15 * 3600 - 59 * 60, max_value=15 * 3600 + 59 * 60).map(lambda s: timezone(timedelta(seconds=s)))
_DATETIMES = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=_OFFSETS)
_OUT_OF_RANGE = st.one_of(
    st.just(OutOfRange(math.inf, "infinity")),
    st.just(OutOfRange(-math.inf, "-infinity")),
    st.integers(min_value=-211_000_000_000 * _US, max_value=9_224_318_015_999_999_999).map(lambda us: OutOfRange(us, f"{us}")),
)
_TIMES = st.one_of(st.none(), _DATETIMES, _OUT_OF_RANGE, st.sampled_from([datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)]))
_TEXT = st.one_of(st.none(), st.text(max_size=40), st.sampled_from(["PENDING", "PROCESSING", "COMPLETED", "FAILED", "HIGH", "MEDIUM", "LOW", ""]))
_INT32 = st.one_of(st.none(), st.integers(min_value=-(2**31), max_value=2**31 - 1))
_NAMES = st.one_of(st.text(max_size=255), st.sampled_from(["@recent", "@pending{status:0}", "", " ", "mike_1", "ü" * 255]))


def _queue_row(**fields: object) -> QueueRow:
    base: dict[str, object] = dict(
        id=uuid.uuid4(), username="x", status="PENDING", priority="HIGH", timestamp=None, last_attempt=None,
        attempts=0, error_message=None, request_id="r", created_at=None,
    )
    return QueueRow(**{**base, **fields})  # type: ignore[arg-type]


_QUEUE_ROWS = st.builds(
    QueueRow, id=st.uuids(), username=st.text(max_size=20), status=_TEXT, priority=_TEXT, timestamp=_TIMES,
    last_attempt=_TIMES, attempts=_INT32, error_message=_TEXT, request_id=_TEXT, created_at=_TIMES,
)
_PROFILE_ROWS = st.builds(
    ProfileRow, id=st.uuids(), username=st.text(max_size=20), created_at=_TIMES, updated_at=_TIMES,
    last_scraped_at=_TIMES, followers_count=_INT32, posts_count=_INT32,
)
_NOW = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC))
_ESTIMATES = st.sampled_from([Estimates(), Estimates(MovingAverage(120.0, 50), {0: MovingAverage(30.0, 50), 1: MovingAverage(1e9, 50), 2: MovingAverage(0.0, 50)})])


@settings(max_examples=400, deadline=None)
@given(
    name=_NAMES,
    profiles=st.lists(_PROFILE_ROWS, max_size=2),
    queue=st.lists(_QUEUE_ROWS, max_size=3),
    now=_NOW,
    ahead=st.integers(min_value=0, max_value=10**7),
    estimates=_ESTIMATES,
)
def test_any_rows_project_and_render_at_any_time(
    name: str, profiles: list[ProfileRow], queue: list[QueueRow], now: datetime, ahead: int, estimates: Estimates
) -> None:
    doc, members = project_with_members(name, profiles, queue, version=1, projected_at=now)
    assert orjson.loads(doc.to_json())["username"] == name
    for entry in members:
        QueueEntry.parse(entry)
    for facts in (doc.profile, doc.queue):
        for value in (facts.__dict__.values() if facts is not None else ()):
            if isinstance(value, datetime):
                assert expressible(value) == value
    data = render(doc, now, QueuePosition(ahead, ahead + 1), estimates)
    orjson.dumps(data)
    for later in (now, now + timedelta(seconds=59.9), now + timedelta(days=400)):
        unchanged_until(doc, later, estimates)
        duration_only_until(doc, later, estimates)
        next_clock_change(doc, later)
        render(doc, later, None, estimates)
