"""The records the write scripts produce, read back by one codec each."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from shared.model.queue_entry import (
    PRIORITIES,
    QueueEntry,
    rank_bounds,
    sql_priority_rank,
)
from shared.model.rows import QueueRow
from shared.model.rules import project_with_members
from shared.redis_store.records import (
    NO_USERNAME,
    NOT_FOUND,
    OTHER,
    PENDING,
    PROCESSING,
    Change,
    Heartbeat,
    Meta,
    change_line,
    meta_status,
    parse_changes,
)

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _doc(status: str | None) -> object:
    rows = [] if status is None else [QueueRow(uuid.uuid4(), "u", status, "HIGH", NOW, None, 0, None, "r", NOW)]
    return project_with_members("u", [], rows, version=1, projected_at=NOW)[0]


@pytest.mark.parametrize(("status", "code"), [("PENDING", PENDING), ("PROCESSING", PROCESSING), ("FAILED", OTHER), (None, NOT_FOUND)])
def test_meta_status_names_what_the_scripts_measure(status: str | None, code: str) -> None:
    assert meta_status(_doc(status)) == code  # type: ignore[arg-type]


def test_meta_round_trips_with_and_without_entries() -> None:
    full = Meta(12, "ab12", PENDING, "0:x:y:z:P", ("0:x:y:z:P", "2:a:b:c:R"))
    assert Meta.parse(full.encode()) == full
    tombstone = Meta(13, "cd34", NOT_FOUND, None, ())
    assert tombstone.encode() == "13 cd34 N -" and Meta.parse(b"13 cd34 N -").tombstone


def test_change_messages_carry_one_line_per_username() -> None:
    changes = parse_changes(b"0:7 mike_1 4294967296 2 -0:a:b:c:P,+0:a:b:c:R\n0:7 ~%40recent 4294967296 0")
    assert changes == [
        Change(0, 7, "mike_1", 4294967296, True, ("-0:a:b:c:P", "+0:a:b:c:R")),
        Change(0, 7, "@recent", 4294967296, False, ()),
    ]


@pytest.mark.parametrize(
    ("args", "change"),
    [
        ((0, 3, "amy", 5, False), Change(0, 3, "amy", 5, False, ())),
        ((0, 3, "amy", 5, True, ""), Change(0, 3, "amy", 5, True, ())),  # moved, nothing taken (a reorder)
        ((2, 9, "amy", 5, True, "+1:x:y:z:P"), Change(2, 9, "amy", 5, True, ("+1:x:y:z:P",))),
        ((0, 4, "~%40x", 6, True, None), Change(0, 4, "@x", 6, True, None)),  # a move not listed
        ((1, 8, NO_USERNAME, 0, True, None), Change(1, 8, None, 0, True, None)),  # a rebuild's sweep
    ],
)
def test_every_form_of_change_line_reads_back(args: tuple, change: Change) -> None:  # type: ignore[type-arg]
    assert parse_changes(change_line(*args)) == [change]


@pytest.mark.parametrize(
    "line",
    [
        "@beat",
        "0:7 mike_1 1 1 +0:a:b:c:P",  # a move not listed lists nothing
        "0:7 mike_1 1 0 +0:a:b:c:P",  # nor does no move
        "0:7 mike_1 1 2 0:a:b:c:P",  # an entry without its sign
        "0:7 mike_1 1 2 +",
        "0:7 mike_1 1 2 +a b",
        "0:7 mike_1 1 3",
        "0:7 Mike 1 0",  # not a token
        "0:x mike_1 1 0",
        "",
    ],
)
def test_what_is_no_change_line_is_refused(line: str) -> None:
    with pytest.raises(ValueError):
        parse_changes(line)


def test_a_heartbeat_reads_back_or_is_none() -> None:
    beat = Heartbeat(at=1.5, active=True, backlog=3, pid=7, host="h")
    assert Heartbeat.parse(beat.model_dump_json()) == beat
    assert Heartbeat.parse(None) is None and Heartbeat.parse(b"{not json") is None


def test_the_document_version_is_its_first_field() -> None:
    # write_document.lua reads it anchored at the start, never searching the JSON.
    assert _doc("PENDING").to_json().startswith(b'{"version":1,')  # type: ignore[attr-defined]


def test_the_priority_order_has_one_definition_and_the_migration_follows_it() -> None:
    from projector.migrate import migration_files

    assert PRIORITIES == ("HIGH", "MEDIUM")
    sql = dict(migration_files())["001_seed_tables.sql"]
    assert sql_priority_rank() in sql and "@queue_order@" not in sql and "@active@" not in sql
    assert "'HIGH'" not in "".join(text for _, text in _raw_sql_files())  # the model fills it in
    low, high = rank_bounds(1)
    entry = QueueEntry.parse("1:01001796094193840305:94c96447-b459-414b-a577-1dec88b5569e:f90189e2:P")
    assert low[1:] <= "1:01001796094193840305" < high[1:]
    assert entry.rank == 1 and entry.state == "P"


def _raw_sql_files() -> list[tuple[str, str]]:
    from importlib import resources

    folder = resources.files("projector").joinpath("sql")
    return [(p.name, p.read_text()) for p in folder.iterdir() if p.name.endswith(".sql")]


def test_a_documents_version_is_read_at_its_place_only() -> None:
    from shared.model.document import VERSION_PREFIX, version_of_json

    doc = _doc("PROCESSING").to_json()  # type: ignore[attr-defined]
    assert doc.startswith(VERSION_PREFIX.encode()) and version_of_json(doc) == 1
    assert version_of_json(b'{"username":"x","version":7}') is None


def test_the_scripts_take_their_letters_from_the_codecs() -> None:
    from shared.redis_store import store

    sources = [s.source for s in store._SCRIPTS]
    assert not any("@" + word in src for src in sources for word in ("pending@", "meta_")), "a placeholder left"
    assert "string.sub(own, -1) ~= 'P'" in store._READ.source


def test_a_change_line_reads_back() -> None:
    from shared.redis_store.records import change_line

    line = change_line(3, 41, "~%40recent", 2**60, True)
    assert parse_changes(line + "\n" + change_line(0, 42, "mike", "7", 0)) == [
        Change(3, 41, "@recent", 2**60, True), Change(0, 42, "mike", 7, False)
    ]
