"""The streams' `Last-Event-ID`: a version for one username, a cursor of versions for many."""

from __future__ import annotations

import random

import pytest

from api import cursor

NAMES = ["mike_1", "anna", "travel_48213"]


@pytest.mark.parametrize("seed", range(40))
def test_a_cursor_reads_back_as_the_versions_it_was_made_of(seed: int) -> None:
    rng = random.Random(seed)
    names = [f"user_{i}" for i in range(rng.randint(1, 50))]
    base = rng.choice([0, 1, 2**40, 2**64, 2**80])
    versions = [None if rng.random() < 0.2 else base + rng.randrange(0, 2**rng.randint(1, 30)) for _ in names]
    made = cursor.encode(names, versions)
    assert cursor.decode(made, names) == versions
    assert set(made) <= set("0123456789abcdef.ghijklmnopqrstuvwxyz")  # safe in a header, as it is


def test_fifty_close_versions_make_a_short_cursor() -> None:
    names = [f"user_{i}" for i in range(50)]
    # Versions are (xmax << 16) | ...: one transaction apart is 65,536 apart.
    versions = [137_000_000_000 + i * 65_536 for i in range(50)]
    made = cursor.encode(names, versions)
    assert len(made) < 300, made  # 50 decimal versions alone would take 600
    assert cursor.decode(made, names) == versions


@pytest.mark.parametrize(
    "other",
    [
        None,
        "",
        "garbage",
        "1234",
        cursor.encode(list(reversed(NAMES)), [1, 2, 3]),  # another list's
        cursor.encode(NAMES[:2], [1, 2]),
        cursor.encode(NAMES, [1, 2, 3]) + ".0",
        cursor.encode(NAMES, [1, 2, 3]).upper(),
        cursor.encode(NAMES, [1, 2, 3]).replace(".", ","),
        cursor.encode(NAMES, [1, 2, 3]).rsplit(".", 3)[0] + "." + "z" * 21 + ".0.0.0",  # beyond any version
        cursor.encode(NAMES, [None, None, None]).rsplit(".", 3)[0] + ".1.2.3",  # deltas without a base
    ],
)
def test_a_cursor_not_made_for_these_names_holds_nothing(other: str | None) -> None:
    assert cursor.decode(other, NAMES) == [None, None, None]


def test_a_cursor_with_nothing_sent_yet_holds_nothing() -> None:
    assert cursor.decode(cursor.encode(NAMES, [None, None, None]), NAMES) == [None, None, None]


@pytest.mark.parametrize(
    ("last_event_id", "version"),
    [
        ("137101311", 137101311),
        (" 42 ", 42),
        ("0", 0),
        (str(2**80), 2**80),
        (None, None),
        ("", None),
        ("abc", None),
        ("-5", None),
        ("1.5", None),
        ("1e9", None),
        ("٣", None),  # a digit, but not ASCII
        ("9" * 31, None),
    ],
)
def test_the_single_stream_id_is_a_decimal_version(last_event_id: str | None, version: int | None) -> None:
    assert cursor.parse_version(last_event_id) == version
