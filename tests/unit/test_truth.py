"""`Snapshot.projections`: one projection per username, with the collector paused only meanwhile."""

from __future__ import annotations

import gc
from datetime import UTC, datetime

import pytest

from shared.model.rules import active_members, project
from shared.postgres.snapshots import Snapshot, collector_paused
from tests.unit.test_rules_reference import random_usernames

AT = datetime(2026, 1, 15, 15, 0, tzinfo=UTC)


def test_projections_are_project_and_active_members_per_username_in_order() -> None:
    usernames = random_usernames(3, 300)
    projections = Snapshot(77, dict(usernames)).projections(AT)
    assert [p.document.username for p in projections] == [name for name, _ in usernames]
    for (name, rows), p in zip(usernames, projections, strict=True):
        assert p.document == project(name, rows.profiles, rows.queue, version=77, projected_at=AT)
        assert list(p.active_members) == active_members(rows.queue, name)


def test_projections_of_nothing() -> None:
    assert Snapshot(1, {}).projections(AT) == []


@pytest.mark.parametrize("enabled", [True, False])
def test_the_collector_is_paused_while_projecting_and_restored_after(enabled: bool) -> None:
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        seen = []
        with collector_paused():
            seen.append(gc.isenabled())
        assert seen == [False]
        assert gc.isenabled() is enabled
        Snapshot(1, dict(random_usernames(4, 20))).projections(AT)
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()


def test_the_collector_is_restored_when_projecting_fails() -> None:
    assert gc.isenabled()
    with pytest.raises(ZeroDivisionError), collector_paused():
        1 / 0  # noqa: B018
    assert gc.isenabled()
